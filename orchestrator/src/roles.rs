//! What one orchestrator process does when many share a bucket: its role (`--role`) and,
//! for the replicas that run pipelines, which stations are its own (`--shard K/N`).
//!
//! Sharding is rendezvous (highest-random-weight) hashing of the station IDs with bounded
//! load: each station has a weight per shard, and in a fixed order (by the hash of its ID)
//! takes the heaviest shard that holds fewer than ceil(S/N) stations. No replica talks
//! to another and nothing is stored: the assignment is a pure function of the configured
//! station IDs and N, so every replica reading the same configuration agrees, a replica
//! restarted under the same ordinal (what a Kubernetes StatefulSet does) takes back
//! exactly its stations, no shard runs more than ceil(S/N) pipelines (plain hashing
//! gave 6/1/5 for 12 stations over 3), and adding a station or a shard moves few others.

use std::fmt;
use std::str::FromStr;

/// Which parts of the orchestrator run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Pipelines and processing: one box per store.
    #[default]
    All,
    /// Only the station pipelines (of this process's shard), with health, metrics and
    /// `/api/stations`; no order is processed here.
    Stations,
    /// Only order processing (any number of replicas; claims keep an order to one); no
    /// pipeline is started here.
    Consumer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Stations => "stations",
            Role::Consumer => "consumer",
        }
    }

    /// Whether this role starts the station pipelines.
    pub fn supervises(self) -> bool {
        self != Role::Consumer
    }

    /// Whether this role processes orders (and runs retention).
    pub fn processes(self) -> bool {
        self != Role::Stations
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--shard K/N`: this replica is shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// `--shard` as typed: `K/N`, or `ordinal/N` where K comes from the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(Shard),
    /// K is the number after the last `-` of the host name, as a StatefulSet names its
    /// pods (`stations-0`, `stations-1`...).
    Ordinal {
        count: u32,
    },
}

impl FromStr for ShardArg {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardArg, String> {
        let usage = || {
            format!(
                "'{s}' is not a shard: write K/N (K from 0 to N-1, for example 0/3) or \
                 ordinal/N (K taken from a StatefulSet pod's name, e.g. stations-2)"
            )
        };
        let (k, n) = s.split_once('/').ok_or_else(usage)?;
        let count: u32 = n.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!(
                "'{s}': N, the number of shards, must be at least 1"
            ));
        }
        let k = k.trim();
        if k == "ordinal" {
            return Ok(ShardArg::Ordinal { count });
        }
        let index: u32 = k.parse().map_err(|_| usage())?;
        Shard::new(index, count).map(ShardArg::Fixed)
    }
}

impl ShardArg {
    /// The shard, with `ordinal` read from `hostname`.
    pub fn resolve(self, hostname: &str) -> Result<Shard, String> {
        match self {
            ShardArg::Fixed(s) => Ok(s),
            ShardArg::Ordinal { count } => {
                let index = ordinal(hostname).ok_or_else(|| {
                    format!(
                        "--shard ordinal/{count}: the host name '{hostname}' does not end in \
                         -<number> as a StatefulSet pod's does; give the shard as K/{count}"
                    )
                })?;
                Shard::new(index, count).map_err(|e| {
                    format!(
                        "--shard ordinal/{count} on host '{hostname}': {e} (the StatefulSet \
                         has more replicas than shards?)"
                    )
                })
            }
        }
    }
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("the number of shards must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index}/{count} does not exist: K runs from 0 to {}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// The stations of `all` (every configured station, the same list on every replica)
    /// that are this shard's.
    pub fn pick<'a>(self, all: &[&'a str]) -> Vec<&'a str> {
        assign(all, self.count)
            .into_iter()
            .zip(all)
            .filter(|(k, _)| *k == self.index)
            .map(|(_, id)| *id)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What this process runs: the role on top of the configuration's `supervision.enabled`
/// and `processing.enabled`, and the shard of the stations whose pipelines it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duty {
    pub role: Role,
    pub shard: Shard,
    pub pipelines: bool,
    pub processing: bool,
}

impl Duty {
    /// Refuses a combination that would leave the process with nothing to do, or a shard
    /// where no pipeline runs.
    pub fn new(
        role: Role,
        shard: Option<Shard>,
        supervision_enabled: bool,
        processing_enabled: bool,
    ) -> Result<Duty, String> {
        let pipelines = role.supervises() && supervision_enabled;
        let processing = role.processes() && processing_enabled;
        if shard.is_some() && !pipelines {
            return Err(format!(
                "--shard divides the station pipelines among replicas, and this one starts \
                 none (--role {role}{}); consumers take every station's orders (claims keep \
                 each to one): drop --shard",
                if supervision_enabled {
                    ""
                } else {
                    ", supervision.enabled = false"
                }
            ));
        }
        if !pipelines && !processing {
            let why = match role {
                Role::Stations => "--role stations with supervision.enabled = false",
                Role::Consumer => "--role consumer with processing.enabled = false",
                Role::All => "supervision.enabled and processing.enabled both false",
            };
            return Err(format!(
                "{why}: this orchestrator would do nothing; enable the one this replica is for"
            ));
        }
        Ok(Duty {
            role,
            shard: shard.unwrap_or(Shard::WHOLE),
            pipelines,
            processing,
        })
    }

    /// The stations of `all` whose pipelines this process starts.
    pub fn pipelines_of<'a>(&self, all: &[&'a str]) -> Vec<&'a str> {
        if self.pipelines {
            self.shard.pick(all)
        } else {
            Vec::new()
        }
    }
}

/// The shard (0..count) of each of `stations`, in their order: no shard gets more than
/// ceil(len/count). Duplicated IDs get the same shard.
pub fn assign(stations: &[&str], count: u32) -> Vec<u32> {
    let count = count.max(1);
    let cap = stations.len().div_ceil(count as usize).max(1);
    let hashes: Vec<u64> = stations.iter().map(|s| fnv1a(s.as_bytes())).collect();
    let mut order: Vec<usize> = (0..stations.len()).collect();
    order.sort_by(|&a, &b| (hashes[a], stations[a]).cmp(&(hashes[b], stations[b])));
    let mut load = vec![0usize; count as usize];
    let mut out = vec![0u32; stations.len()];
    let mut seen: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for i in order {
        if let Some(&k) = seen.get(stations[i]) {
            out[i] = k;
            continue;
        }
        let mut ranked: Vec<u32> = (0..count).collect();
        ranked.sort_by_key(|&k| std::cmp::Reverse((weight(hashes[i], k), k)));
        let k = ranked
            .into_iter()
            .find(|&k| load[k as usize] < cap)
            .unwrap_or(0);
        load[k as usize] += 1;
        seen.insert(stations[i], k);
        out[i] = k;
    }
    out
}

fn weight(station_hash: u64, shard: u32) -> u64 {
    mix(station_hash ^ u64::from(shard).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The number after the last `-` of a host name (`stations-2` -> 2).
pub fn ordinal(hostname: &str) -> Option<u32> {
    let (_, n) = hostname.trim().rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// This machine's host name (the pod name in Kubernetes).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_default()
}

// FNV-1a and the splitmix64 finaliser: fixed algorithms, so every replica and every
// version computes the same assignment (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("station_{i}")).collect()
    }

    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn every_station_belongs_to_exactly_one_shard() {
        for n in [1, 2, 5, 12, 40] {
            let all = ids(n);
            let all = refs(&all);
            for count in 1..=7 {
                let mut picked: Vec<&str> = (0..count)
                    .flat_map(|k| Shard::new(k, count).unwrap().pick(&all))
                    .collect();
                picked.sort();
                let mut want = all.clone();
                want.sort();
                assert_eq!(picked, want, "{n} stations over {count} shards");
            }
        }
    }

    #[test]
    fn no_shard_runs_more_than_its_share() {
        for n in [3usize, 12, 13, 100, 3000] {
            let all = ids(n);
            for count in [2u32, 3, 5] {
                let mut per = vec![0usize; count as usize];
                for k in assign(&refs(&all), count) {
                    per[k as usize] += 1;
                }
                let cap = n.div_ceil(count as usize);
                assert!(per.iter().all(|&p| p <= cap), "{n} over {count}: {per:?}");
            }
        }
    }

    /// How many of `before`'s stations changed shard in `after` (matched by ID).
    fn moved(before: &[String], b: u32, after: &[String], a: u32) -> usize {
        let old = assign(&refs(before), b);
        let new = assign(&refs(after), a);
        before
            .iter()
            .zip(old)
            .filter(|(id, k)| {
                let j = after.iter().position(|x| x == *id).unwrap();
                new[j] != *k
            })
            .count()
    }

    #[test]
    fn adding_a_station_or_a_shard_moves_few_others() {
        let twelve = ids(12);
        let thirteen = ids(13);
        let m = moved(&twelve, 3, &thirteen, 3);
        assert!(m <= 2, "adding a 13th station moved {m} of 12");
        let many = ids(3000);
        let m = moved(&many, 3, &many, 4);
        // A quarter must go to the new shard; bounded load moves a few more.
        assert!(
            (700..1100).contains(&m),
            "{m} of 3000 moved from 3 to 4 shards"
        );
    }

    #[test]
    fn the_assignment_is_fixed_across_builds() {
        // A replica of another version must agree with this one: pinned.
        assert_eq!(
            assign(&refs(&ids(12)), 3),
            [0, 0, 1, 2, 0, 2, 0, 2, 1, 1, 1, 2]
        );
        let twice = assign(&["a", "b", "a"], 2);
        assert_eq!(twice[0], twice[2]);
    }

    #[test]
    fn a_role_that_would_do_nothing_or_a_shard_without_pipelines_is_refused() {
        let all = ids(12);
        let all = refs(&all);
        let d = Duty::new(
            Role::Stations,
            Some(Shard { index: 1, count: 3 }),
            true,
            true,
        )
        .unwrap();
        assert!(d.pipelines && !d.processing);
        assert_eq!(d.pipelines_of(&all).len(), 4);
        let c = Duty::new(Role::Consumer, None, true, true).unwrap();
        assert!(!c.pipelines && c.processing && c.pipelines_of(&all).is_empty());
        let whole = Duty::new(Role::All, None, true, true).unwrap();
        assert_eq!(whole.pipelines_of(&all), all);
        assert!(whole.processing);
        let e = Duty::new(Role::Consumer, Some(Shard::WHOLE), true, true).unwrap_err();
        assert!(e.contains("drop --shard"), "{e}");
        let e = Duty::new(Role::Stations, None, false, true).unwrap_err();
        assert!(e.contains("would do nothing"), "{e}");
        let e = Duty::new(Role::All, None, false, false).unwrap_err();
        assert!(e.contains("both false"), "{e}");
    }

    #[test]
    fn shard_arguments_parse_or_say_how_to_write_them() {
        assert_eq!(
            "1/3".parse::<ShardArg>(),
            Ok(ShardArg::Fixed(Shard { index: 1, count: 3 }))
        );
        assert_eq!(
            "ordinal/4".parse::<ShardArg>(),
            Ok(ShardArg::Ordinal { count: 4 })
        );
        for bad in ["3", "3/3", "a/3", "1/0", "-1/2", "1/x", ""] {
            let e = bad.parse::<ShardArg>().unwrap_err();
            assert!(e.contains("shard") || e.contains("N"), "{bad}: {e}");
        }
        assert!("3/3".parse::<ShardArg>().unwrap_err().contains("0 to 2"));
    }

    #[test]
    fn the_ordinal_comes_from_a_statefulset_pod_name() {
        assert_eq!(ordinal("oa-stations-0"), Some(0));
        assert_eq!(ordinal("oa-stations-12\n"), Some(12));
        assert_eq!(ordinal("store-box"), None);
        assert_eq!(ordinal("box"), None);
        let arg = ShardArg::Ordinal { count: 3 };
        assert_eq!(arg.resolve("stations-2"), Ok(Shard { index: 2, count: 3 }));
        assert!(
            arg.resolve("stations-3")
                .unwrap_err()
                .contains("more replicas")
        );
        assert!(arg.resolve("laptop").unwrap_err().contains("K/3"));
    }
}
