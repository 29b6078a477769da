//! `--role` and `--shard` through the binary: `check-config` says which stations a replica
//! takes, the shards of one configuration cover every station once, and a role or shard
//! that cannot work exits 2 with one line saying what to change.

use std::path::Path;
use std::process::{Command, Output};

use orchestrator::testing::scratch_dir;

fn config(dir: &Path, stations: usize) -> std::path::PathBuf {
    std::fs::write(dir.join("orders.json"), "{}").unwrap();
    std::fs::write(
        dir.join("inventory.json"),
        r#"{"items":[{"id":"banana","name":"banana"}]}"#,
    )
    .unwrap();
    let mut toml = String::from(
        "orders_file = \"orders.json\"\ninventory_file = \"inventory.json\"\n\
         [storage]\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"frames\"\n",
    );
    for i in 1..=stations {
        toml.push_str(&format!(
            "\n[[stations]]\nid = \"station_{i}\"\nsource = \"rtsp://127.0.0.1:8554/s{i}\"\n"
        ));
    }
    let path = dir.join("orchestrator.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn check(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["check-config", "--config"])
        .arg(cfg)
        .args(args)
        .env_remove("OA_ROLE")
        .env_remove("OA_SHARD")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The station IDs after "pipelines for N (" in a check-config summary.
fn stations_named(summary: &str) -> Vec<String> {
    let Some((_, rest)) = summary.split_once("pipelines for ") else {
        return Vec::new();
    };
    let Some((_, list)) = rest.split_once('(') else {
        return Vec::new();
    };
    let list = list.split_once(')').map_or(list, |(l, _)| l);
    list.split(", ").map(str::to_owned).collect()
}

#[test]
fn the_shards_of_one_configuration_take_every_station_once_and_evenly() {
    let dir = scratch_dir("roles-shards");
    let cfg = config(&dir, 12);
    let mut seen = Vec::new();
    for k in 0..3 {
        let out = check(
            &cfg,
            &["--role", "stations", "--shard", &format!("{k}/3")],
            &[],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(&format!("shard {k}/3")), "{text}");
        assert!(text.contains("processing off"), "{text}");
        let mine = stations_named(&text);
        assert_eq!(mine.len(), 4, "12 stations over 3 shards: {text}");
        seen.extend(mine);
    }
    seen.sort();
    let mut want: Vec<String> = (1..=12).map(|i| format!("station_{i}")).collect();
    want.sort();
    assert_eq!(seen, want);

    // The StatefulSet way: K from the pod name, through the environment.
    let out = check(
        &cfg,
        &[],
        &[
            ("OA_ROLE", "stations"),
            ("OA_SHARD", "ordinal/3"),
            ("HOSTNAME", "oa-stations-1"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("shard 1/3"), "{text}");

    let out = check(&cfg, &["--role", "consumer"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("role consumer: no pipelines; processing on"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Arguments, environment, what the error says.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn a_shard_that_cannot_work_exits_2_saying_what_to_write() {
    let dir = scratch_dir("roles-bad");
    let cfg = config(&dir, 3);
    let cases: [Case; 4] = [
        (
            &["--role", "stations", "--shard", "3/3"],
            &[],
            "K runs from 0 to 2",
        ),
        (&["--role", "stations", "--shard", "two"], &[], "write K/N"),
        (
            &["--role", "consumer", "--shard", "0/2"],
            &[],
            "drop --shard",
        ),
        (
            &["--role", "stations", "--shard", "ordinal/2"],
            &[("HOSTNAME", "store-box")],
            "does not end in -<number>",
        ),
    ];
    for (args, env, says) in cases {
        let out = check(&cfg, args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
