//! `eval`: scores a list of predictions. Checkpoint scoring (center and ten crops)
//! builds on the trainer's models and loader.

use std::process::ExitCode;

use clap::Parser;

/// Top-1 and top-5 accuracy of a score file: each line `label score_0 score_1 ...`.
#[derive(Parser)]
#[command(name = "eval", version, about = "Scores AlexNet predictions: top-1 and top-5")]
struct Cli {
    /// Text file, one image per line: the label, then one score per class.
    scores: std::path::PathBuf,
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
    use anyhow::Context;
    let text = std::fs::read_to_string(&cli.scores).with_context(|| format!("reading {}", cli.scores.display()))?;
    let mut labels = Vec::new();
    let mut scores = Vec::new();
    let mut classes = None;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let label: i64 = it.next().unwrap_or("").parse().with_context(|| format!("line {}: bad label", i + 1))?;
        let row: Vec<f32> = it
            .map(|v| v.parse::<f32>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("line {}: bad score", i + 1))?;
        anyhow::ensure!(
            *classes.get_or_insert(row.len()) == row.len(),
            "line {}: {} scores, earlier lines have {}",
            i + 1,
            row.len(),
            classes.unwrap_or(0)
        );
        anyhow::ensure!(
            label >= 0 && (label as usize) < row.len(),
            "line {}: label {label} outside 0..{}",
            i + 1,
            row.len()
        );
        labels.push(label);
        scores.extend(row);
    }
    let n = labels.len() as i64;
    anyhow::ensure!(n > 0, "{}: no lines", cli.scores.display());
    let s = tch::Tensor::from_slice(&scores).view([n, -1]);
    let (t1, t5) = eval::topk::correct_top1_top5(&s, &tch::Tensor::from_slice(&labels))?;
    println!(
        "{{\"top1\": {}, \"top5\": {}, \"images\": {n}, \"crops\": 1}}",
        t1 as f64 / n as f64,
        t5 as f64 / n as f64
    );
    Ok(())
}
