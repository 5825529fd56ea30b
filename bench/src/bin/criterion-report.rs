//! Turns criterion's results (`target/criterion/<group>/<bench>/new/estimates.json`) into the
//! markdown tables of `docs/results.md`: per-call medians with their 95% interval, and each as a
//! ratio to the synchronous `getppid` measured in the same group of the same run.
//!
//! Usage: `cargo run -p flexsc-bench --bin criterion-report [CRITERION_DIR]`.

use std::fs;
use std::path::{Path, PathBuf};

/// A median with its confidence interval, in ns per iteration.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    median: f64,
    lo: f64,
    hi: f64,
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            Path::new(&target).join("criterion")
        });
    let Ok(groups) = fs::read_dir(&dir) else {
        eprintln!(
            "no criterion results in {} (run `cargo bench` first)",
            dir.display()
        );
        std::process::exit(1);
    };
    let mut groups: Vec<_> = groups
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    groups.sort();
    for group in groups {
        let name = file_name(&group);
        if name == "report" {
            continue;
        }
        let mut rows = Vec::new();
        collect(&group, &group, &mut rows);
        if rows.is_empty() {
            continue;
        }
        rows.sort_by_key(|(id, _)| sort_key(id));
        let base = rows
            .iter()
            .find(|(id, _)| id == "sync_getppid")
            .map(|(_, e)| e.median);
        println!("\n### {name}\n");
        println!(
            "| benchmark | batch | ns per call (median) | 95% interval | ratio to sync getppid |"
        );
        println!("|---|---:|---:|---|---:|");
        for (id, e) in &rows {
            let n = batch_of(id);
            let per = |v: f64| v / n as f64;
            let ratio = base.map_or("".into(), |b| format!("{:.2}x", per(e.median) / b));
            println!(
                "| {} | {} | {:.1} | {:.1} - {:.1} | {} |",
                id.split('/').next().unwrap_or(id),
                n,
                per(e.median),
                per(e.lo),
                per(e.hi),
                ratio
            );
        }
    }
}

/// Finds `new/estimates.json` under `dir`, naming each by its path below the group.
fn collect(group: &Path, dir: &Path, rows: &mut Vec<(String, Estimate)>) {
    let est = dir.join("new").join("estimates.json");
    if est.is_file() {
        if let Some(e) = fs::read_to_string(&est).ok().and_then(|s| parse(&s)) {
            let id = dir
                .strip_prefix(group)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            rows.push((id, e));
        }
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && file_name(&p) != "report" {
            collect(group, &p, rows);
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The batch size is the last path component when it is a number (criterion's parameter).
fn batch_of(id: &str) -> u64 {
    id.rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn sort_key(id: &str) -> (u8, String, u64) {
    let first = if id == "sync_getppid" { 0 } else { 1 };
    (
        first,
        id.split('/').next().unwrap_or("").to_string(),
        batch_of(id),
    )
}

/// Reads the median's point estimate and confidence bounds from criterion's estimates.json.
fn parse(json: &str) -> Option<Estimate> {
    let m = &json[json.find("\"median\"")?..];
    let num = |key: &str| -> Option<f64> {
        let s = &m[m.find(key)? + key.len()..];
        let s = s.trim_start_matches([':', ' ']);
        let end = s.find([',', '}']).unwrap_or(s.len());
        s[..end].trim().parse().ok()
    };
    Some(Estimate {
        median: num("\"point_estimate\"")?,
        lo: num("\"lower_bound\"")?,
        hi: num("\"upper_bound\"")?,
    })
}
