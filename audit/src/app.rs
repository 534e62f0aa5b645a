//! Runs one parsed command line against the configured store.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};

use followers_shared::store::{Position, StreamId};

use crate::cli::{AtArgs, AuditCommand, Cli, ExportArgs, HistoryArgs, ImportArgs, VerifyArgs};
use crate::error::AuditError;
use crate::progress::Progress;
use crate::source::{self, Open, Range};
use crate::state::{AtQuery, Moment, record_at};
use crate::timeline::{Subject, timeline};
use crate::transfer::{export, import};
use crate::verify::{self, Options};
use crate::{render, source::History};

/// How a successful run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `verify` found problems (listed in its output); the first one's sentence.
    VerifyFailed {
        problems: usize,
        first: String,
    },
}

/// Runs `cli`, writing its answer to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<Outcome, AuditError> {
    let progress = Progress::new(cli.quiet);
    let mode = match cli.command {
        AuditCommand::Import(_) => Open::CreateIfMissing,
        _ => Open::Existing,
    };
    let store = source::open(&cli.store, mode).await?;
    match cli.command {
        AuditCommand::History(args) => {
            let history = source::read(&store, Range::ALL, &progress).await?;
            history_cmd(&history, &args, out)?;
        }
        AuditCommand::At(args) => {
            let history = source::read(&store, Range::ALL, &progress).await?;
            at_cmd(&history, &args, out)?;
        }
        AuditCommand::Export(args) => export_cmd(&store, &args, &progress, out).await?,
        AuditCommand::Import(args) => import_cmd(&store, &args, &progress, out).await?,
        AuditCommand::Verify(args) => {
            let snapshot = args
                .snapshot
                .as_deref()
                .map(verify::load_snapshot)
                .transpose()?;
            let history = source::read(&store, Range::ALL, &progress).await?;
            return verify_cmd(&history, snapshot.as_ref(), &args, &progress, out);
        }
    }
    Ok(Outcome::Done)
}

fn usage(message: &str) -> AuditError {
    AuditError::Usage(message.to_owned())
}

/// The subject of `history`'s arguments.
pub fn subject(args: &HistoryArgs) -> Result<Subject, AuditError> {
    if let Some(user) = &args.user {
        return Ok(Subject::User {
            user: user.clone(),
            account: args.account.clone(),
        });
    }
    let account = args
        .account
        .clone()
        .ok_or_else(|| usage("--account is required unless --user is given"))?;
    if args.account_stream {
        return Ok(Subject::Stream(StreamId::account(account)));
    }
    let record = args.record.record().ok_or_else(|| {
        usage("say whose history: --contact, --opportunity, --account-stream or --user")
    })?;
    Ok(Subject::Stream(StreamId::record(account, record)))
}

fn history_cmd(
    history: &History,
    args: &HistoryArgs,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let entries = timeline(&history.commits, &subject(args)?)?;
    if args.json {
        render::json_lines(&entries, out)
    } else {
        render::timeline_table(&entries, out)
    }
}

/// The question of `at`'s arguments.
pub fn at_query(args: &AtArgs) -> Result<AtQuery, AuditError> {
    let record = args
        .record
        .record()
        .ok_or_else(|| usage("say which record: --contact or --opportunity"))?;
    let moment = match (args.time, args.position) {
        (Some(t), None) => Moment::Time(t),
        (None, Some(p)) => Moment::Position(Position(p)),
        _ => return Err(usage("say when: either --time or --position")),
    };
    Ok(AtQuery {
        account: args.account.clone(),
        record,
        moment,
        user: args.user.clone(),
    })
}

fn at_cmd(history: &History, args: &AtArgs, out: &mut dyn Write) -> Result<(), AuditError> {
    let answer = record_at(history, &at_query(args)?)?;
    if args.json {
        render::json_lines(std::slice::from_ref(&answer), out)
    } else {
        render::record_at_text(&answer, out)
    }
}

async fn export_cmd(
    store: &followers_store::AnyStore,
    args: &ExportArgs,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let range = Range {
        from: args.from.map(Position),
        to: args.to.map(Position),
    };
    let history = source::read(store, range, progress).await?;
    match &args.output {
        Some(path) => {
            let file = File::create(path)
                .map_err(AuditError::io(format!("cannot create {}", path.display())))?;
            let mut w = BufWriter::new(file);
            export(&history, &mut w)?;
        }
        None => {
            export(&history, out)?;
        }
    }
    Ok(())
}

async fn import_cmd(
    store: &followers_store::AnyStore,
    args: &ImportArgs,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let done = match &args.input {
        Some(path) => {
            let file = File::open(path)
                .map_err(AuditError::io(format!("cannot open {}", path.display())))?;
            import(store, &mut BufReader::new(file), progress).await?
        }
        None => import(store, &mut std::io::stdin().lock(), progress).await?,
    };
    writeln!(
        out,
        "imported {} commits ({} were already stored)",
        done.appended, done.already_stored
    )
    .map_err(AuditError::io("cannot write the output"))
}

fn verify_cmd(
    history: &History,
    snapshot: Option<&followers_shared::read_model::Snapshot>,
    args: &VerifyArgs,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<Outcome, AuditError> {
    let options = Options {
        allow_unsealed: args.allow_unsealed,
    };
    let report = verify::verify(history, snapshot, options, progress);
    if args.json {
        render::json_lines(std::slice::from_ref(&report), out)?;
    } else {
        render::report_text(&report, out)?;
    }
    Ok(match report.problems.first() {
        None => Outcome::Done,
        Some(p) => Outcome::VerifyFailed {
            problems: report.problems.len(),
            first: p.message.clone(),
        },
    })
}
