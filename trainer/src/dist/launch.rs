//! Who this process is in a data-parallel run, from the launcher's environment.
//!
//! torchrun (and any launcher that sets the same variables): `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, all required once one of `RANK` or
//! `WORLD_SIZE` is set; `LOCAL_WORLD_SIZE` optional. Under torchrun's agent
//! (`TORCHELASTIC_USE_AGENT_STORE=True`) the TCPStore already runs in the agent, so
//! every rank connects to it; keys go under `/worker/attempt_<TORCHELASTIC_RESTART_COUNT>`
//! as torch.distributed does, so a restarted attempt does not read stale keys.
//!
//! Slurm (`srun`, one task per GPU), used when `RANK`/`WORLD_SIZE` are absent:
//! `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE` (its
//! leading number, optional). The store's host is `MASTER_ADDR` when set, else
//! `SLURM_LAUNCH_NODE_IPADDR` (the node srun ran on: in an sbatch script the first
//! node of the allocation, where task 0 runs); the port is `MASTER_PORT` when set,
//! else `20000 + SLURM_JOB_ID % 10000`, so that two jobs sharing a node do not collide.
//! Without an agent rank 0 hosts the store.

use std::fmt;

/// This process's place in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    /// Ranks on this machine (for sizing threads); `None` when the launcher did not say.
    pub local_world: Option<usize>,
    pub master_addr: String,
    pub master_port: u16,
    /// The store runs in torchrun's agent: every rank is a client.
    pub agent_store: bool,
    /// Key prefix in the store.
    pub store_prefix: String,
    /// "torchrun" or "slurm", for messages.
    pub launcher: &'static str,
}

impl Launch {
    /// Whether this process hosts the TCPStore.
    pub fn hosts_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }
}

impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rank {} of {} (local rank {}, {}, store {}:{}{})",
            self.rank,
            self.world,
            self.local_rank,
            self.launcher,
            self.master_addr,
            self.master_port,
            if self.agent_store {
                " in torchrun's agent"
            } else if self.rank == 0 {
                " hosted here"
            } else {
                ""
            }
        )
    }
}

/// Reads the launch from the process environment; `Ok(None)` when no launcher
/// variable is set (a single process).
pub fn from_env() -> Result<Option<Launch>, LaunchError> {
    from_vars(|k| std::env::var(k).ok())
}

/// The variables of a launch, looked up by name; empty values count as unset.
struct Vars<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, k: &str) -> Option<String> {
        (self.0)(k).filter(|v| !v.trim().is_empty())
    }

    fn num(&self, k: &str) -> Result<Option<usize>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| format!("{k}={v:?} is not a number")),
        }
    }

    fn port(k: &str, v: &str) -> Result<u16, String> {
        match v.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("{k}={v:?} is not a TCP port (1-65535)")),
        }
    }
}

/// Who this process is, before the checks that hold for every launcher.
struct Found {
    rank: usize,
    world: usize,
    local_rank: usize,
    local_world: Option<usize>,
    addr: String,
    port: u16,
    launcher: &'static str,
}

/// torchrun's variables (or the same set by hand).
fn torchrun<F: Fn(&str) -> Option<String>>(v: &Vars<F>) -> Result<Found, String> {
    let need = |k: &str| -> Result<String, String> {
        v.get(k).ok_or_else(|| {
            format!(
                "{k} is not set, but RANK/WORLD_SIZE are: launch with torchrun, or set all of RANK, WORLD_SIZE, \
                 LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
            )
        })
    };
    need("RANK")?;
    need("WORLD_SIZE")?;
    need("LOCAL_RANK")?;
    let addr = need("MASTER_ADDR")?;
    let port = Vars::<F>::port("MASTER_PORT", &need("MASTER_PORT")?)?;
    Ok(Found {
        rank: v.num("RANK")?.unwrap_or(0),
        world: v.num("WORLD_SIZE")?.unwrap_or(0),
        local_rank: v.num("LOCAL_RANK")?.unwrap_or(0),
        local_world: v.num("LOCAL_WORLD_SIZE")?,
        addr,
        port,
        launcher: "torchrun",
    })
}

/// srun's variables; the store's address and port from MASTER_ADDR/MASTER_PORT, else
/// the launch node and the job id.
fn slurm<F: Fn(&str) -> Option<String>>(v: &Vars<F>) -> Result<Found, String> {
    let need = |k: &str| -> Result<usize, String> {
        v.num(k)?.ok_or_else(|| format!("{k} is not set, but SLURM_PROCID is: launch with srun"))
    };
    let addr = v.get("MASTER_ADDR").or_else(|| v.get("SLURM_LAUNCH_NODE_IPADDR")).ok_or_else(|| {
        "under Slurm without MASTER_ADDR or SLURM_LAUNCH_NODE_IPADDR: export MASTER_ADDR (the host of task 0)"
            .to_string()
    })?;
    let port = match v.get("MASTER_PORT") {
        Some(p) => Vars::<F>::port("MASTER_PORT", &p)?,
        None => match v.num("SLURM_JOB_ID")? {
            Some(id) => 20000 + (id % 10000) as u16,
            None => return Err("under Slurm without MASTER_PORT or SLURM_JOB_ID: export MASTER_PORT".into()),
        },
    };
    // SLURM_NTASKS_PER_NODE looks like "4" or "4(x2)".
    let per_node = v
        .get("SLURM_NTASKS_PER_NODE")
        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok()));
    Ok(Found {
        rank: need("SLURM_PROCID")?,
        world: need("SLURM_NTASKS")?,
        local_rank: need("SLURM_LOCALID")?,
        local_world: per_node,
        addr,
        port,
        launcher: "slurm",
    })
}

/// [`from_env`] over any variable lookup (tests). Errors are one line naming the
/// variable and what to do.
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LaunchError> {
    read(Vars(var)).map_err(LaunchError)
}

/// A launch whose variables are missing or disagree: one line naming the variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

fn read<F: Fn(&str) -> Option<String>>(v: Vars<F>) -> Result<Option<Launch>, String> {
    let f = if v.get("RANK").is_some() || v.get("WORLD_SIZE").is_some() {
        torchrun(&v)?
    } else if v.get("SLURM_PROCID").is_some() {
        slurm(&v)?
    } else {
        return Ok(None);
    };
    let Found { rank, world, local_rank, local_world, launcher, .. } = f;
    if world == 0 {
        return Err(format!("world size 0 ({launcher}): at least one process"));
    }
    if rank >= world {
        return Err(format!("rank {rank} is not below the world size {world} ({launcher}'s variables disagree)"));
    }
    if let Some(lw) = local_world {
        if lw == 0 || local_rank >= lw || lw > world {
            return Err(format!(
                "local rank {local_rank} of {lw} local processes does not fit a world of {world} ({launcher})"
            ));
        }
    }
    let agent_store = launcher == "torchrun"
        && v.get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|a| a.trim().eq_ignore_ascii_case("true"));
    let store_prefix = format!("/worker/attempt_{}", v.get("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into()));
    Ok(Some(Launch {
        rank,
        world,
        local_rank,
        local_world,
        master_addr: f.addr.trim().to_string(),
        master_port: f.port,
        agent_store,
        store_prefix,
        launcher,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>, String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        from_vars(|k| m.get(k).cloned()).map_err(|e| e.0)
    }

    const TORCHRUN: &[(&str, &str)] = &[
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "3"),
        ("LOCAL_WORLD_SIZE", "4"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
        // torchrun under srun: torchrun's variables win.
        ("SLURM_PROCID", "0"),
        ("SLURM_NTASKS", "2"),
    ];

    #[test]
    fn no_launcher_is_a_single_process() {
        assert_eq!(launch(&[("PATH", "/bin")]).unwrap(), None);
    }

    #[test]
    fn torchrun_variables() {
        let l = launch(TORCHRUN).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_rank, l.local_world), (3, 8, 3, Some(4)));
        assert_eq!((l.master_addr.as_str(), l.master_port, l.agent_store), ("10.0.0.1", 29500, true));
        assert_eq!((l.store_prefix.as_str(), l.launcher, l.hosts_store()), ("/worker/attempt_2", "torchrun", false));
        let mut v = TORCHRUN.to_vec();
        v.retain(|(k, _)| !k.starts_with("TORCHELASTIC") && *k != "RANK");
        v.push(("RANK", "0"));
        let l = launch(&v).unwrap().unwrap();
        assert!(l.hosts_store(), "without an agent rank 0 hosts the store");
    }

    #[test]
    fn slurm_variables() {
        let l = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "8(x2)"),
            ("SLURM_LAUNCH_NODE_IPADDR", "192.168.1.7"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.rank, l.world, l.local_rank, l.local_world), (5, 16, 1, Some(8)));
        assert_eq!((l.master_addr.as_str(), l.master_port, l.agent_store), ("192.168.1.7", 23456, false));
        let l = launch(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("MASTER_ADDR", "node01"),
            ("MASTER_PORT", "29400"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.master_addr.as_str(), l.master_port, l.hosts_store()), ("node01", 29400, true));
    }

    #[test]
    fn bad_launches_are_one_line_errors_naming_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (TORCHRUN.iter().copied().filter(|(k, _)| *k != "MASTER_PORT").collect(), "MASTER_PORT"),
            (TORCHRUN.iter().copied().filter(|(k, _)| *k != "LOCAL_RANK").collect(), "LOCAL_RANK"),
            (TORCHRUN.iter().copied().filter(|(k, _)| *k != "WORLD_SIZE").collect(), "WORLD_SIZE"),
            (
                vec![
                    ("RANK", "2"),
                    ("WORLD_SIZE", "2"),
                    ("LOCAL_RANK", "0"),
                    ("MASTER_ADDR", "h"),
                    ("MASTER_PORT", "1"),
                ],
                "rank 2",
            ),
            (
                vec![
                    ("RANK", "x"),
                    ("WORLD_SIZE", "2"),
                    ("LOCAL_RANK", "0"),
                    ("MASTER_ADDR", "h"),
                    ("MASTER_PORT", "1"),
                ],
                "RANK",
            ),
            (
                vec![
                    ("RANK", "0"),
                    ("WORLD_SIZE", "2"),
                    ("LOCAL_RANK", "0"),
                    ("MASTER_ADDR", "h"),
                    ("MASTER_PORT", "70000"),
                ],
                "MASTER_PORT",
            ),
            (
                vec![
                    ("RANK", "0"),
                    ("WORLD_SIZE", "0"),
                    ("LOCAL_RANK", "0"),
                    ("MASTER_ADDR", "h"),
                    ("MASTER_PORT", "1"),
                ],
                "world size 0",
            ),
            (
                vec![("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_LOCALID", "0"), ("SLURM_JOB_ID", "1")],
                "MASTER_ADDR",
            ),
            (
                vec![("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "2")],
                "SLURM_NTASKS",
            ),
        ];
        for (vars, want) in cases {
            let e = launch(&vars).unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{vars:?}: {e}");
        }
    }
}
