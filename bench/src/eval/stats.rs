//! libflexsc's own statistics (`flexsc run --stats=FILE`, docs/usage.md): a table is appended
//! to FILE on every SIGUSR2, so one taken before and one after the load give the counters of
//! the measured window alone, without the start-up, warm-up and shutdown.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::process::Server;

/// The "all" row of one statistics table, plus the count of calls run on the carriers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// System calls posted as syscall-page entries (exception-less).
    pub posted: u64,
    /// Batches submitted.
    pub batches: u64,
    /// `flexsc_wait`s.
    pub waits: u64,
    /// Calls run synchronously on the carriers because they act on the calling thread.
    pub local: u64,
    /// Green-thread switches.
    pub switches: u64,
}

impl Counters {
    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            posted: self.posted.saturating_sub(before.posted),
            batches: self.batches.saturating_sub(before.batches),
            waits: self.waits.saturating_sub(before.waits),
            local: self.local.saturating_sub(before.local),
            switches: self.switches.saturating_sub(before.switches),
        }
    }

    /// Entries per batch.
    pub fn mean_batch(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.posted as f64 / self.batches as f64)
    }
}

/// The last line of every table: a table is complete once it is there.
const TABLE_END: &str = "system calls run on the carriers";

/// The counters of the last complete table printed by process `pid` in `text`, and how many
/// complete tables that process printed.
pub fn last_table(text: &str, pid: u32) -> (Option<Counters>, usize) {
    let heading = format!("flexsc-threads statistics (pid {pid},");
    let (mut mine, mut cols, mut current, mut last, mut complete) =
        (false, Vec::new(), None, None, 0);
    for line in text.lines() {
        if line.starts_with("flexsc-threads statistics (") {
            mine = line.starts_with(&heading);
            current = None;
            continue;
        }
        if !mine {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            // "carrier switches steals posted batches mean batch max batch waits local
            // preempted finished": two names are two words; find the columns by name.
            Some(&"carrier") => cols = header_columns(&f),
            Some(&"all") => current = row(&f, &cols),
            _ if line.starts_with(TABLE_END) => {
                complete += 1;
                last = current;
            }
            _ => {}
        }
    }
    (last, complete)
}

/// The index in a row of each counter, from the header's words.
fn header_columns(words: &[&str]) -> Vec<(&'static str, usize)> {
    let mut cols = Vec::new();
    // A row has one field per column; the header's two-word names ("mean batch", "max
    // batch") take two words but one field.
    let mut field = 0;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if (w == "mean" || w == "max") && words.get(i + 1) == Some(&"batch") {
            i += 1;
        } else {
            for name in ["posted", "batches", "waits", "local", "switches"] {
                if w == name {
                    cols.push((name, field));
                }
            }
        }
        field += 1;
        i += 1;
    }
    cols
}

fn row(fields: &[&str], cols: &[(&'static str, usize)]) -> Option<Counters> {
    let get = |name: &str| -> Option<u64> {
        let (_, i) = cols.iter().find(|(n, _)| *n == name)?;
        fields.get(*i)?.parse().ok()
    };
    Some(Counters {
        posted: get("posted")?,
        batches: get("batches")?,
        waits: get("waits")?,
        local: get("local")?,
        switches: get("switches")?,
    })
}

/// Asks the server for a table (SIGUSR2) and returns its counters once it is in `file`; `None`
/// if none came within 5 s (a server with its own SIGUSR2 handler, or one that blocks it).
pub fn snapshot(server: &mut Server, file: &Path) -> Option<Counters> {
    let pid = server.pid();
    let before = last_table(&fs::read_to_string(file).unwrap_or_default(), pid).1;
    server.signal("USR2").ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (counters, n) = last_table(&fs::read_to_string(file).unwrap_or_default(), pid);
        if n > before {
            return counters;
        }
        sleep(Duration::from_millis(20));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
flexsc-threads statistics (pid 26510, SIGUSR2)
carrier     switches   steals       posted    batches mean batch max batch      waits    local   finished
      0       246758        0       245957      62647        3.9         4       1730        0          0
    all       246758        0       245957      62647        3.9         4       1730        7          0
batch sizes (all carriers): 1-1: 919 2-3: 1474 4-7: 60254 8-15: 0 16-31: 0 32-63: 0 64-127: 0 128-255: 0 256+: 0
system calls posted (all carriers, total 245957): read 106789, sendmsg 106757, epoll_wait 32395, close 16
system calls run on the carriers (not posted, all carriers, total 0):
flexsc-threads statistics (pid 99, SIGUSR2)
carrier     switches   steals       posted    batches mean batch max batch      waits    local   finished
    all            1        0            1          1        1.0         1          1        0          0
";

    #[test]
    fn reads_the_all_row_of_the_right_process() {
        let (c, n) = last_table(TABLE, 26510);
        assert_eq!(n, 1);
        let c = c.unwrap();
        assert_eq!(
            (c.switches, c.posted, c.batches, c.waits, c.local),
            (246758, 245957, 62647, 1730, 7)
        );
        // pid 99's table has no last line yet: not complete.
        assert_eq!(last_table(TABLE, 99), (None, 0));
    }
}
