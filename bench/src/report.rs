//! The results: one JSON line per row as it is measured, and a Markdown table at the end.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Line {
    pub row: String,
    pub ours: String,
    pub floor: String,
    pub ratio: String,
    pub target: String,
    pub met: Option<bool>,
}

#[derive(Debug)]
pub struct Report {
    lines: Vec<Line>,
    file: Option<std::fs::File>,
}

impl Report {
    pub fn new(path: Option<PathBuf>) -> anyhow::Result<Self> {
        let file = path.map(std::fs::File::create).transpose()?;
        Ok(Self {
            lines: Vec::new(),
            file,
        })
    }

    /// Records a row: prints its JSON line at once.
    pub fn add(&mut self, line: Line, mut data: Value) {
        if let Value::Object(map) = &mut data {
            map.insert("row".into(), json!(line.row));
            map.insert("target".into(), json!(line.target));
            map.insert("met".into(), json!(line.met));
        }
        let text = data.to_string();
        println!("{text}");
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{text}");
        }
        self.lines.push(line);
    }

    pub fn print_table(&self, args: &crate::Args) {
        println!();
        println!(
            "Run: `{}`{}, {} clients, nats-server {}, {} CPUs",
            if args.quick { "--quick" } else { "full" },
            if args.rows.is_empty() {
                String::new()
            } else {
                format!(" (rows {:?})", args.rows)
            },
            args.clients,
            nats_version(),
            std::thread::available_parallelism().map_or(0, usize::from),
        );
        println!();
        println!("| Row | Ours | Floor (same run) | Ratio | Target | Met |");
        println!("|---|---|---|---|---|---|");
        for l in &self.lines {
            let met = match l.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                l.row, l.ours, l.floor, l.ratio, l.target, met
            );
        }
    }
}

fn nats_version() -> String {
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().trim_start_matches("nats-server: ").to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

/// `12,345`
pub fn count(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn ms(x: f64) -> String {
    if x < 1.0 {
        format!("{:.0} µs", x * 1000.0)
    } else {
        format!("{x:.2} ms")
    }
}
