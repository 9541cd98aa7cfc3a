//! Every paper-experiment variant (issue 13's switches) through `eval`: a checkpoint of
//! each loads from its metadata into the same model (same probabilities as the network
//! that wrote it, not those of the paper's net with the same weights) and scores a
//! dataset of non-square procedural images end to end. PyTorch's side of the same files
//! (strict=True, same logits) is `trainer/tests/check_parity.py`.

use eval::checkpoint::{open, Overrides};
use eval::score::{run, ScoreConfig};
use preprocess::synth;
use tch::{nn::VarStore, Device, Kind, Tensor};
use trainer::checkpoint::{save_model, CheckpointMeta};
use trainer::data::{Crops, Normalization};
use trainer::model::{AlexNet, ModelConfig};

#[test]
fn every_variant_round_trips_through_eval() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let mut s = synth::SynthConfig::new(t.path().join("images"));
    (s.classes, s.train_per_class, s.val_per_class, s.corrupt, s.seed) = (4, 2, 2, 0, 5);
    let data = synth::build_raw(&s, &t.path().join("ds")).unwrap();
    let wnids = alexnet_shared::Dataset::open(&data).unwrap().manifest().wnids();
    let base = ModelConfig { width: 0.1, crop: 67, ..ModelConfig::paper(4) };
    let x = Tensor::randn([3, 3, 67, 67], (Kind::Float, Device::Cpu)) * 50.0;
    for cfg in base.switch_combinations() {
        let what = cfg.variant_name();
        let vs = VarStore::new(Device::Cpu);
        let mut m = AlexNet::new(&vs.root(), &cfg).unwrap();
        tch::manual_seed(2);
        m.torch_default_init();
        let meta = CheckpointMeta {
            model: ModelConfig { dropout: 0.25, ..cfg.clone() },
            normalization: Normalization::MeanRgb,
            epoch: 1,
            step: 3,
            manifest_sha256: String::new(),
            wnids: wnids.clone(),
            data_fingerprint: None,
            inputs: None,
            provenance: None,
            // Half the variants trained without PCA colour noise (an optional key).
            pca_noise: cfg.lrn,
        };
        let path = t.path().join(format!("{what}.safetensors"));
        save_model(&path, &vs, Some(&meta)).unwrap();

        let loaded = open(&path, &Overrides::default(), &wnids, Device::Cpu, false).unwrap();
        assert_eq!(loaded.config(), &meta.model, "{what}");
        let want = tch::no_grad(|| trainer::model::probabilities(&m.forward_t(&x, false)));
        let got = tch::no_grad(|| loaded.probabilities(&x)).unwrap();
        assert_eq!((got - &want).abs().max().double_value(&[]), 0.0, "{what}");
        if cfg != base && cfg.towers == 2 {
            // The paper's net with these weights computes something else: eval built the
            // variant from the metadata.
            let mut pvs = VarStore::new(Device::Cpu);
            let p = AlexNet::new(&pvs.root(), &base).unwrap();
            pvs.copy(&vs).unwrap();
            let paper = tch::no_grad(|| trainer::model::probabilities(&p.forward_t(&x, false)));
            assert!((paper - &want).abs().max().double_value(&[]) > 1e-6, "{what}: the paper's probabilities");
        }
        let d = loaded.describe();
        assert!(cfg == base || d.contains(&what), "{what}: {d}");
        assert_eq!(d.contains("nopca"), !cfg.lrn, "{what}: {d}");

        let mut sc = ScoreConfig::new(vec![path.clone()], data.clone());
        sc.crops = Crops::Center;
        let r = run(&sc).unwrap();
        assert_eq!(r.images, 8, "{what}");
    }
}
