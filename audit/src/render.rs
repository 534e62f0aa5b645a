//! Output: readable tables and text for people, JSON (lines) for programs.

use std::io::Write;

use serde::Serialize;

use crate::error::AuditError;
use crate::state::RecordAt;
use crate::timeline::{Entry, how};
use crate::verify::Report;

fn write_err(e: std::io::Error) -> AuditError {
    AuditError::Io {
        what: "cannot write the output".to_owned(),
        source: e,
    }
}

/// One JSON value per line.
pub fn json_lines<T: Serialize>(items: &[T], out: &mut dyn Write) -> Result<(), AuditError> {
    for item in items {
        serde_json::to_writer(&mut *out, item).map_err(|e| write_err(e.into()))?;
        writeln!(out).map_err(write_err)?;
    }
    Ok(())
}

/// A timeline as a table.
pub fn timeline_table(entries: &[Entry], out: &mut dyn Write) -> Result<(), AuditError> {
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.position.to_string(),
                e.at.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
                e.stream.clone(),
                e.actor.to_string(),
                e.command_id.to_string(),
                e.what.clone(),
                e.cause
                    .as_ref()
                    .map_or_else(String::new, |c| format!("sync after {c}")),
            ]
        })
        .collect();
    table(
        ["POS", "TIME", "STREAM", "ACTOR", "COMMAND", "WHAT", "CAUSE"],
        &rows,
        out,
    )
}

fn table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec())).map_err(write_err)?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect())).map_err(write_err)?;
    }
    Ok(())
}

/// A record at a moment, as text.
pub fn record_at_text(r: &RecordAt, out: &mut dyn Write) -> Result<(), AuditError> {
    let when =
        r.at.map_or_else(String::new, |t| format!(", stored {}", t.to_rfc3339()));
    writeln!(
        out,
        "{} of account {} as of position {}{when}",
        r.record, r.account, r.position.0
    )
    .map_err(write_err)?;
    let owner = r
        .owner
        .as_ref()
        .map_or_else(|| "nobody (unassigned)".to_owned(), ToString::to_string);
    writeln!(out, "owner: {owner}").map_err(write_err)?;
    if r.followers.is_empty() {
        writeln!(out, "followers: none").map_err(write_err)?;
    } else {
        writeln!(out, "followers:").map_err(write_err)?;
        for f in &r.followers {
            writeln!(
                out,
                "  {} added {} by {} at {}",
                f.user,
                how(&f.how),
                f.added_by,
                f.added_at.to_rfc3339()
            )
            .map_err(write_err)?;
        }
    }
    writeln!(out).map_err(write_err)?;
    let rows: Vec<[String; 6]> = r
        .access
        .iter()
        .map(|u| {
            let member = match (u.role, u.data_scope, u.active) {
                (Some(role), Some(scope), Some(active)) => format!(
                    "{}/{}{}",
                    serde_plain(&role),
                    serde_plain(&scope),
                    if active { "" } else { " (inactive)" }
                ),
                _ => "not a member".to_owned(),
            };
            let mut row = [
                u.user.to_string(),
                member,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ];
            for (cell, d) in row[2..].iter_mut().zip(&u.decisions) {
                *cell = format!(
                    "{} ({})",
                    if d.decision.allowed { "yes" } else { "no" },
                    d.decision.reason
                );
            }
            row
        })
        .collect();
    table(
        [
            "USER",
            "MEMBER",
            "VIEW",
            "EDIT",
            "MANAGE_FOLLOWERS",
            "CHANGE_OWNER",
        ],
        &rows,
        out,
    )
}

fn serde_plain(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

/// A verification report, as text.
pub fn report_text(r: &Report, out: &mut dyn Write) -> Result<(), AuditError> {
    if let Some(account) = &r.account {
        writeln!(out, "account {account} only (--account)").map_err(write_err)?;
    }
    writeln!(
        out,
        "{} commits in {} streams, {} sealed with a chain value",
        r.commits, r.streams, r.sealed
    )
    .map_err(write_err)?;
    if let Some(p) = r.snapshot_position {
        writeln!(out, "compared with the snapshot at position {}", p.0).map_err(write_err)?;
    }
    if r.signatures_checked {
        let by: Vec<String> = r
            .signed_by
            .iter()
            .map(|(key, n)| format!("{n} by key {key}"))
            .collect();
        let by = if by.is_empty() {
            "none".to_owned()
        } else {
            by.join(", ")
        };
        writeln!(out, "signatures checked: {by}").map_err(write_err)?;
        for h in r.signed_head.iter().chain(&r.partition_heads) {
            let of = h
                .partition
                .map_or(String::new(), |p| format!(" of partition {p}"));
            writeln!(
                out,
                "compared with the signed head{of} at position {} ({} streams, key {}, written {})",
                h.position.0,
                h.streams,
                h.key_id,
                h.at.to_rfc3339()
            )
            .map_err(write_err)?;
        }
    } else {
        writeln!(
            out,
            "signatures not checked (give the command service's public keys with --public-key)"
        )
        .map_err(write_err)?;
    }
    for sentence in &r.limited {
        writeln!(out, "limited: {sentence}").map_err(write_err)?;
    }
    if r.ok() {
        let whose = match &r.account {
            Some(account) => format!("account {account}'s history"),
            None => "the history".to_owned(),
        };
        writeln!(
            out,
            "ok: {whose} is whole, untampered and replays consistently"
        )
        .map_err(write_err)?;
    } else {
        for p in &r.problems {
            writeln!(out, "problem ({}): {}", serde_plain(&p.kind), p.message)
                .map_err(write_err)?;
        }
    }
    Ok(())
}
