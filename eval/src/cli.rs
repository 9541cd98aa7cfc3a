//! What the `eval` binary's subcommands do, behind its flag parsing (`main.rs`): each
//! runs its library function, writes the files asked for, and returns the text to
//! print.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};

use crate::kernels::KernelsConfig;
use crate::neighbors::{grid, grid_size, spread_rows, write_list, NeighborsConfig};
use crate::score::ScoreConfig;

/// What `eval score` prints: `stdout` for standard output, `stderr` for standard error.
#[derive(Debug, Default, PartialEq)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

/// `eval score`: the per-class table and the summary; the report as JSON to `json`
/// (written as [`alexnet_shared::OutputFile`] does: through symlinks, in place into a
/// FIFO or device). `-` prints the JSON on standard output and the table on standard
/// error, so `eval score ... --json - | jq` reads JSON only.
pub fn score(cfg: &ScoreConfig, json: Option<&std::path::Path>) -> Result<Printed> {
    let report = crate::score::run(cfg)?;
    let text = serde_json::to_string_pretty(&report)? + "\n";
    match json {
        Some(p) if p == std::path::Path::new("-") => return Ok(Printed { stdout: text, stderr: report.render() }),
        Some(p) => {
            alexnet_shared::atomic_write(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?
        }
        None => {}
    }
    Ok(Printed { stdout: report.render(), stderr: String::new() })
}

/// What `eval predict` prints, and how it ends: an error when some input could not be
/// classified (after the others are printed).
pub struct PredictPrinted {
    pub stdout: String,
    pub stderr: String,
    pub outcome: Result<()>,
}

/// `eval predict`: the table on standard output, or JSON / CSV (to a file, or with `-`
/// on standard output and the table on standard error). Each input that failed is an
/// `error:` line naming it on standard error; then the outcome says how many failed.
pub fn predict(
    cfg: &crate::predict::PredictConfig,
    json: Option<&std::path::Path>,
    csv: Option<&std::path::Path>,
) -> Result<PredictPrinted> {
    let report = crate::predict::run(cfg)?;
    let mut out = PredictPrinted { stdout: report.render(), stderr: String::new(), outcome: Ok(()) };
    let data = match (json, csv) {
        (Some(p), _) => Some((p, serde_json::to_string_pretty(&report)? + "\n")),
        (None, Some(p)) => Some((p, report.csv())),
        (None, None) => None,
    };
    if let Some((p, text)) = data {
        if p == std::path::Path::new("-") {
            out.stderr = std::mem::replace(&mut out.stdout, text);
        } else {
            alexnet_shared::atomic_write(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    for f in &report.failed {
        out.stderr += &format!("error: {}: {}\n", f.path, f.error);
    }
    if !report.failed.is_empty() {
        let total = report.failed.len() + report.images.len();
        out.outcome = Err(anyhow::anyhow!(
            "{} of {total} input(s) could not be classified (named above); the others are printed",
            report.failed.len()
        ));
    }
    Ok(out)
}

/// `eval kernels`: writes the picture.
pub fn kernels(cfg: &KernelsConfig) -> Result<String> {
    let (w, h, k) = crate::kernels::run(cfg)?;
    Ok(format!("wrote {} ({w}x{h}): {k} conv1 kernels\n", cfg.out.display()))
}

/// `eval neighbors` as the command line gives it.
pub struct NeighborsJob {
    /// `query_rows` empty when `queries` says how many to spread over the split.
    pub cfg: NeighborsConfig,
    pub queries: Option<usize>,
    /// The picture (PNG) and the list (CSV).
    pub out: PathBuf,
    pub list: Option<PathBuf>,
    /// Side of each picture in the grid.
    pub thumb: u32,
}

/// `eval neighbors`: the search, the picture and the list; one line per query.
pub fn neighbors(job: NeighborsJob) -> Result<String> {
    let NeighborsJob { mut cfg, queries, out, list, thumb } = job;
    ensure!((8..=512).contains(&thumb), "--thumb must be in 8..=512");
    if let Some(n) = queries {
        let ds = alexnet_shared::Dataset::open(&cfg.data)?;
        cfg.query_rows = spread_rows(n, ds.manifest().split(cfg.query_split).map_or(0, |s| s.rows as usize));
    }
    // Refused before the search, not after it: the picture is one image in memory.
    let (w, h) = grid_size(cfg.query_rows.len(), cfg.k, thumb);
    let bytes = w as u64 * h as u64 * 3;
    ensure!(
        bytes <= 1 << 30 && w <= 65_535 && h <= 65_535,
        "the picture would be {w} x {h} pixels ({:.1} GiB): ask for fewer --queries (here {}), a smaller --k or --thumb",
        bytes as f64 / (1u64 << 30) as f64,
        cfg.query_rows.len()
    );
    let (results, _) = crate::neighbors::run(&cfg)?;
    let img = grid(&cfg.data, cfg.query_split, &results, cfg.k, thumb)?;
    img.save_with_format(&out, image::ImageFormat::Png).with_context(|| format!("writing {}", out.display()))?;
    if let Some(l) = &list {
        write_list(l, &cfg.data, cfg.query_split, &results)?;
    }
    let mut text = String::new();
    for q in &results {
        let d: Vec<String> = q.neighbors.iter().map(|n| format!("{}:{:.2}", n.row, n.distance)).collect();
        text += &format!("{} row {}: train rows (distance) {}\n", cfg.query_split, q.row, d.join(" "));
    }
    text += &format!("wrote {} ({}x{})\n", out.display(), img.width(), img.height());
    Ok(text)
}
