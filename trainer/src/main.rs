//! `train`: AlexNet training. This first version checks a device: it runs a small
//! convolution and matrix product there and prints what libtorch sees.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tch::{Kind, Tensor};

#[derive(Parser)]
#[command(name = "train", version, about = "AlexNet training (Krizhevsky et al. 2012) on libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that libtorch works on a device: cpu, cuda or cuda:N.
    CheckDevice {
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckDevice { device } => {
            let dev = trainer::device::parse_device(&device)?;
            tch::manual_seed(0);
            // conv1 of the paper on one 227x227 image: [1, 96, 55, 55]
            let x = Tensor::f_randn([1, 3, 227, 227], (Kind::Float, dev))?;
            let w = Tensor::f_randn([96, 3, 11, 11], (Kind::Float, dev))?;
            let y = x.f_conv2d(&w, None::<Tensor>, [4, 4], [0, 0], [1, 1], 1)?;
            let m = Tensor::f_randn([256, 256], (Kind::Float, dev))?;
            let s = m.f_matmul(&m)?.f_sum(Kind::Double)?.f_double_value(&[])?; // sync point
            println!(
                "device {dev:?}: conv output {:?}, matmul sum {s:.3}; CUDA available: {}, {} device(s); intra-op threads {}",
                y.size(),
                tch::Cuda::is_available(),
                tch::Cuda::device_count(),
                tch::get_num_threads()
            );
            Ok(())
        }
    }
}
