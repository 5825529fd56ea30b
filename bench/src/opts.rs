//! Command-line options of the bench binaries: `--key value`, `--key=value` and bare `--flag`s;
//! a bad one ends the program with a message naming it.

/// Prints `prog: msg` and exits with status 2 (a usage error).
pub fn die(prog: &str, msg: &str) -> ! {
    eprintln!("{prog}: {msg}");
    std::process::exit(2);
}

/// The options given, in order (a later one wins).
pub struct Opts {
    prog: &'static str,
    given: Vec<(String, Option<String>)>,
}

impl Opts {
    /// Parses `args` for program `prog`; anything not starting with `--` is an error, whose
    /// message ends with `hint`.
    pub fn parse(prog: &'static str, args: &[String], hint: &str) -> Self {
        let mut given = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                die(prog, &format!("unexpected argument {a:?}{hint}"));
            };
            if let Some((k, val)) = key.split_once('=') {
                given.push((k.to_string(), Some(val.to_string())));
            } else {
                let val = it.next_if(|n| !n.starts_with("--")).cloned();
                given.push((key.to_string(), val));
            }
        }
        Self { prog, given }
    }

    /// Ends the program with `msg`, as this program.
    pub fn die(&self, msg: &str) -> ! {
        die(self.prog, msg)
    }

    /// Whether `--key` was given.
    pub fn flag(&self, key: &str) -> bool {
        self.given.iter().any(|(k, _)| k == key)
    }

    /// The last `--key`'s value, parsed (a bad value ends the program).
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        let (_, v) = self.given.iter().rev().find(|(k, _)| k == key)?;
        let v = v.as_deref().unwrap_or("");
        Some(
            v.parse()
                .unwrap_or_else(|_| self.die(&format!("bad --{key} {v:?}"))),
        )
    }

    /// The last `--key`'s value split at commas (empty items dropped).
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        let s: String = self.get(key)?;
        Some(
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Ends the program on the first option not in `known`: a misspelt option must not run a
    /// long measurement with the defaults.
    pub fn only(&self, known: &[&str]) {
        if let Some((k, _)) = self
            .given
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            self.die(&format!("unknown option --{k} (--help lists them)"));
        }
    }

    /// Prints the `//!` doc at the top of `source` (a binary's usage) and exits with status 0
    /// if `--help` or `--h` was given.
    pub fn help(&self, source: &str) {
        if self.flag("help") || self.flag("h") {
            for l in source.lines().take_while(|l| l.starts_with("//!")) {
                println!("{}", l.trim_start_matches("//!").trim_start());
            }
            std::process::exit(0);
        }
    }
}
