//! `eval neighbors` (section 6.1) against a brute-force search, and `eval kernels`
//! (figure 3) read back from the PNG, on a small procedural dataset.

use std::path::{Path, PathBuf};

use alexnet_shared::{Dataset, Split};
use eval::checkpoint::{open, Overrides};
use eval::neighbors::{features_of_rows, grid, run, write_list, NeighborsConfig};
use preprocess::synth;
use tch::{nn::VarStore, Device};
use trainer::checkpoint::{save_model, CheckpointMeta};
use trainer::model::{AlexNet, ModelConfig};

fn dataset(dir: &Path) -> PathBuf {
    let mut s = synth::SynthConfig::new(dir.join("images"));
    s.classes = 3;
    s.train_per_class = 4;
    s.val_per_class = 2;
    s.corrupt = 0;
    s.seed = 21;
    synth::build_raw(&s, &dir.join("ds")).unwrap()
}

fn checkpoint(path: &Path, data: &Path) -> PathBuf {
    let cfg = ModelConfig { width: 0.1, crop: 67, ..ModelConfig::paper(3) };
    let vs = VarStore::new(Device::Cpu);
    let mut m = AlexNet::new(&vs.root(), &cfg).unwrap();
    tch::manual_seed(8);
    m.torch_default_init();
    let meta = CheckpointMeta {
        model: cfg,
        normalization: trainer::data::Normalization::MeanImage,
        epoch: 0,
        step: 0,
        manifest_sha256: String::new(),
        wnids: Dataset::open(data).unwrap().manifest().wnids(),
        data_fingerprint: None,
        inputs: None,
        provenance: None,
        pca_noise: true,
    };
    save_model(path, &vs, Some(&meta)).unwrap();
    path.to_path_buf()
}

#[test]
fn neighbors_match_a_brute_force_search_and_find_the_query_itself() {
    tch::set_num_threads(1);
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let ck = checkpoint(&t.path().join("m.safetensors"), &data);
    let cfg = NeighborsConfig {
        checkpoint: ck.clone(),
        data: data.clone(),
        query_split: Split::Train,
        query_rows: vec![0, 5, 11],
        k: 3,
        batch_size: 5, // 12 train rows: 3 batches, the last short; lists merge across them
        workers: 2,
        device: Device::Cpu,
        overrides: Overrides::default(),
        limit: None,
        progress: false,
    };
    let (results, model) = run(&cfg).unwrap();

    // Brute force: every train feature, every distance in float64, sorted.
    let ds = Dataset::open(&data).unwrap();
    let all: Vec<usize> = (0..12).collect();
    let f = tch::no_grad(|| features_of_rows(&model, &ds, Split::Train, &all, &cfg)).unwrap();
    let dim = f.size()[1] as usize;
    let f: Vec<f32> = Vec::try_from(f.flatten(0, -1)).unwrap();
    let norm: f64 = (0..dim).map(|j| (f[j] as f64).powi(2)).sum::<f64>().sqrt();
    assert!(norm > 0.0);
    for q in &results {
        let mut d: Vec<(f64, usize)> = (0..12)
            .map(|r| {
                let s: f64 = (0..dim).map(|j| (f[q.row * dim + j] as f64 - f[r * dim + j] as f64).powi(2)).sum();
                (s.sqrt(), r)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let rows: Vec<usize> = q.neighbors.iter().map(|n| n.row).collect();
        assert_eq!(rows, d[..3].iter().map(|x| x.1).collect::<Vec<_>>(), "query {}", q.row);
        for (n, (want, _)) in q.neighbors.iter().zip(&d) {
            assert!((n.distance as f64 - want).abs() <= 1e-4 * norm, "query {}: {} vs {want}", q.row, n.distance);
        }
        // The query itself comes first, at distance 0 (up to float32 rounding of features
        // computed in batches of another size).
        assert_eq!(q.neighbors[0].row, q.row);
        assert!(q.neighbors[0].distance as f64 <= 1e-5 * norm, "{}", q.neighbors[0].distance);
    }

    // The picture: a row per query; the query's thumbnail equals its first neighbour's
    // (itself); under each image its class name and, for neighbours, the distance; a
    // neighbour of another class than its query framed in red.
    let thumb = 48;
    let img = grid(&data, Split::Train, &results, 3, thumb).unwrap();
    let (pad, gap, header, label) = (4, 16, 24, 32);
    assert_eq!(img.dimensions(), (pad + (thumb + pad) * 4 + gap, header + pad + (thumb + label + pad) * 3));
    let train = Dataset::open(&data).unwrap().split(Split::Train).unwrap();
    let class = |row: usize| train.get(row).unwrap().label;
    let ink = |x0: u32, y0: u32, w: u32, h: u32| {
        (y0..y0 + h)
            .flat_map(|y| (x0..x0 + w).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 != [255; 3])
            .count()
    };
    assert!(ink(0, 0, img.width(), header) > 50, "no column titles");
    let mut framed = 0;
    for (i, q) in results.iter().enumerate() {
        let y = header + pad + i as u32 * (thumb + label + pad);
        let (qx, nx) = (pad, pad + (thumb + pad) + gap);
        for (dy, dx) in [(0, 0), (5, 17), (thumb - 1, thumb - 1)] {
            assert_eq!(img.get_pixel(qx + dx, y + dy), img.get_pixel(nx + dx, y + dy));
        }
        assert!(ink(qx, y + thumb + 1, thumb, label) > 20, "no class name under query {i}");
        for (j, n) in q.neighbors.iter().enumerate() {
            let x = pad + (j as u32 + 1) * (thumb + pad) + gap;
            assert!(ink(x, y + thumb + 1, thumb, label) > 20, "no label under neighbour {j} of query {i}");
            let corner = img.get_pixel(x, y).0;
            if class(n.row) != class(q.row) {
                assert_eq!(corner, [200, 0, 0], "neighbour {j} of query {i} is of another class: framed in red");
                framed += 1;
            }
        }
    }
    eprintln!("{framed} neighbours of another class framed");
    let list = t.path().join("n.csv");
    write_list(&list, &data, Split::Train, &results).unwrap();
    let text = std::fs::read_to_string(&list).unwrap();
    assert_eq!(text.lines().count(), 1 + 3 * 3);
    assert!(text.lines().nth(1).unwrap().starts_with("train,0,"));

    // A picture too large to hold in memory is refused before the search, in one line.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_eval"))
        .args(["neighbors", "--quiet", "--checkpoint"])
        .arg(&ck)
        .arg("--data")
        .arg(&data)
        .args(["--query-rows", "0,1", "--k", "5000", "--thumb", "512", "--out"])
        .arg(t.path().join("big.png"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.starts_with("error: the picture would be") && e.lines().count() == 1, "{e}");
    assert!(!t.path().join("big.png").exists());
}

#[test]
fn kernels_picture_holds_each_kernels_scaled_weights() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let ck = checkpoint(&t.path().join("m.safetensors"), &data);
    let out = t.path().join("k.png");
    let cfg = eval::kernels::KernelsConfig { checkpoint: ck.clone(), out: out.clone(), scale: 3, columns: None };
    let (w, h, k) = eval::kernels::run(&cfg).unwrap();
    // width 0.1: conv1 has _even(9.6) = 10 kernels of 3x11x11, two towers of 5.
    assert_eq!(k, 10);
    let img = image::open(&out).unwrap().to_rgb8();
    let layout = eval::kernels::Layout::new([10, 3, 11, 11], 2, 3, None);
    // A title band on top, a column naming the two towers on the left.
    let (left, top) = layout.margins();
    assert_eq!((left, top), (64, 28));
    let size = (layout.size().0 + left, layout.size().1 + top);
    assert_eq!(img.dimensions(), size);
    assert_eq!((w, h), size);
    let ink = |x0: u32, y0: u32, w: u32, h: u32| {
        (y0..y0 + h)
            .flat_map(|y| (x0..x0 + w).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] > 128)
            .count()
    };
    assert!(ink(0, 0, img.width(), top) > 50, "no title");
    for t in [0, 5] {
        let (_, y0) = layout.origin(t, 10);
        assert!(ink(0, top + y0, left, layout.cell_h) > 30, "no label beside the tower of kernel {t}");
    }
    // Kernel 7 (second tower, third column), weight (y=4, x=9), from the file itself.
    let m = open(&ck, &Overrides::default(), &Dataset::open(&data).unwrap().manifest().wnids(), Device::Cpu, false)
        .unwrap();
    let wt = &m.vs.variables()["features.0.weight"];
    let kernel: Vec<f32> = Vec::try_from(wt.get(7).flatten(0, -1)).unwrap();
    let (lo, hi) = kernel.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let want: Vec<u8> =
        (0..3).map(|c| (255.0 * (kernel[(c * 11 + 4) * 11 + 9] - lo) / (hi - lo)).round() as u8).collect();
    let (x0, y0) = layout.origin(7, 10);
    assert_eq!(layout.origin(7, 10).1, layout.origin(5, 10).1, "kernels 5..9 share the second tower's row");
    assert!(layout.origin(5, 10).1 > layout.origin(4, 10).1);
    let px = img.get_pixel(left + x0 + 9 * 3 + 2, top + y0 + 4 * 3 + 1).0;
    assert_eq!(px.to_vec(), want);
}
