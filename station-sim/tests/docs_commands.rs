//! Every command in the docs runs as written: the fenced shell commands (and `$ ` lines of
//! text blocks) of README.md, docs/*.md and pipelines/README.md, and the commands in
//! backticks there and in the example configuration's comments. For our programs
//! (`orchestrator`, `station-sim`, `scripts/*.sh`) the subcommand must exist and every
//! `--flag` must be one its `--help` (or the script) knows; every path into the
//! repository that a command names must exist. Needs the release binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use station_sim::run;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (where, command line) of every documented command.
fn documented() -> Vec<(String, String)> {
    let r = root();
    let mut files: Vec<PathBuf> = vec![r.join("README.md"), r.join("pipelines/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(r.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let name = f.strip_prefix(&r).unwrap_or(f).display().to_string();
        let mut fence: Option<String> = None;
        let mut pending = String::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", i + 1);
            if let Some(lang) = line.strip_prefix("```") {
                fence = match fence {
                    None => Some(lang.trim().to_owned()),
                    Some(_) => None,
                };
                continue;
            }
            match fence.as_deref() {
                Some("sh") | Some("bash") => {
                    let l = line.trim();
                    if l.is_empty() || l.starts_with('#') {
                        continue;
                    }
                    if let Some(cont) = l.strip_suffix('\\') {
                        pending.push_str(cont);
                        pending.push(' ');
                        continue;
                    }
                    pending.push_str(l);
                    out.push((at, std::mem::take(&mut pending)));
                }
                Some("text") | Some("console") => {
                    if let Some(cmd) = line.trim().strip_prefix("$ ") {
                        out.push((at, cmd.to_owned()));
                    }
                }
                Some(_) => {}
                None => out.extend(inline(line).into_iter().map(|c| (at.clone(), c))),
            }
        }
    }
    let example = r.join("orchestrator/orchestrator.example.toml");
    for (i, line) in std::fs::read_to_string(&example)
        .unwrap()
        .lines()
        .enumerate()
    {
        if line.trim_start().starts_with('#') {
            for c in inline(line) {
                out.push((format!("orchestrator.example.toml:{}", i + 1), c));
            }
        }
    }
    out
}

/// Commands of ours in backticks: `orchestrator ...`, `station-sim ...`, `scripts/...`.
fn inline(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            let first = s.split_whitespace().next().unwrap_or("");
            is_ours(first.trim_start_matches("target/release/"))
                && s.contains(' ')
                && !s.contains('=')
        })
        .map(str::to_owned)
        .collect()
}

fn is_ours(program: &str) -> bool {
    matches!(program, "orchestrator" | "station-sim")
        || (program.starts_with("scripts/") && program.ends_with(".sh"))
}

/// Words of a shell command: quotes removed, comments dropped.
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in cmd.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => quote = Some(ch),
            (None, '#') if cur.is_empty() => break,
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The simple commands of a line (split at `&&`, `||`, `|`, `;`).
fn simple_commands(cmd: &str) -> Vec<Vec<String>> {
    let mut all = vec![Vec::new()];
    for w in words(cmd) {
        if matches!(w.as_str(), "&&" | "||" | "|" | ";") {
            all.push(Vec::new());
        } else {
            all.last_mut().unwrap().push(w);
        }
    }
    all.into_iter().filter(|c| !c.is_empty()).collect()
}

/// `--flag` names a word holds (`--a/--b`, `[--x`, `--y=1`, `--z]`).
fn flags(word: &str) -> Vec<String> {
    word.split('/')
        .map(|w| w.trim_matches(|c| c == '[' || c == ']' || c == ','))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap().to_owned())
        .collect()
}

const REPO_DIRS: &[&str] = &[
    "scripts/",
    "docs/",
    "deploy/",
    "station-sim/",
    "orchestrator/",
    "pipelines/",
    "models/",
    "gst-plugins/",
];

#[test]
fn every_documented_command_names_real_programs_flags_and_paths() {
    let bin = run::release_dir();
    let docs = documented();
    assert!(docs.len() >= 30, "only {} commands found", docs.len());
    let mut helps: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (at, line) in &docs {
        for mut cmd in simple_commands(line) {
            while cmd
                .first()
                .is_some_and(|w| w == "sudo" || w.contains('=') && !w.starts_with('-'))
            {
                cmd.remove(0);
            }
            let Some(program) = cmd.first().cloned() else {
                continue;
            };
            for w in &cmd {
                let p = w.trim_end_matches([',', ')', '.']);
                if REPO_DIRS.iter().any(|d| p.starts_with(d)) && !root().join(p).exists() {
                    problems.push(format!("{at}: {line}: {p} does not exist"));
                }
            }
            let name = program.trim_start_matches("target/release/");
            if !is_ours(name) {
                continue;
            }
            checked += 1;
            if name.starts_with("scripts/") {
                let script = root().join(name);
                let Ok(text) = std::fs::read_to_string(&script) else {
                    problems.push(format!("{at}: {line}: {name} does not exist"));
                    continue;
                };
                for f in cmd.iter().skip(1).flat_map(|w| flags(w)) {
                    if !text.contains(&f) {
                        problems.push(format!("{at}: {line}: {name} knows no {f}"));
                    }
                }
                continue;
            }
            // The subcommand: the first word after the program that is not a flag.
            let sub: Vec<String> = cmd
                .iter()
                .skip(1)
                .take_while(|w| {
                    !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                })
                .take(1)
                .cloned()
                .collect();
            let key: Vec<String> = std::iter::once(name.to_owned())
                .chain(sub.clone())
                .collect();
            let help = helps.entry(key).or_insert_with(|| {
                let out = Command::new(bin.join(name))
                    .args(&sub)
                    .arg("--help")
                    .output()
                    .unwrap_or_else(|e| panic!("{}: {e}", bin.join(name).display()));
                if out.status.success() {
                    String::from_utf8_lossy(&out.stdout).into_owned()
                } else {
                    String::new()
                }
            });
            if help.is_empty() {
                problems.push(format!(
                    "{at}: {line}: `{name} {}` does not exist",
                    sub.join(" ")
                ));
                continue;
            }
            for f in cmd.iter().skip(1).flat_map(|w| flags(w)) {
                let known = help.contains(&format!("{f} "))
                    || help.contains(&format!("{f}\n"))
                    || help.contains(&format!("{f}="))
                    || help.contains(&format!("{f},"));
                if !known && f != "--help" && f != "--version" {
                    problems.push(format!(
                        "{at}: {line}: `{name} {}` has no {f}",
                        sub.join(" ")
                    ));
                }
            }
        }
    }
    eprintln!(
        "{} documented command lines, {checked} of ours checked",
        docs.len()
    );
    assert!(checked >= 10, "only {checked} of our commands checked");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_a_wrong_flag_a_missing_path_and_a_missing_subcommand() {
    assert_eq!(flags("[--roi"), ["--roi"]);
    assert_eq!(flags("--role/--shard"), ["--role", "--shard"]);
    assert_eq!(
        simple_commands("meson compile -C b && meson install -C b # x"),
        [
            ["meson", "compile", "-C", "b"].map(String::from).to_vec(),
            ["meson", "install", "-C", "b"].map(String::from).to_vec()
        ]
    );
    assert_eq!(
        inline("run `orchestrator check-config --config FILE` or `orchestrator`"),
        ["orchestrator check-config --config FILE"]
    );
    assert!(Path::new(&root().join("scripts/demo.sh")).exists());
}
