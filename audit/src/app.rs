//! Runs one parsed command line against the configured store.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};

use followers_shared::store::{Position, StreamId};

use crate::cli::{
    self, AtArgs, AuditCommand, Cli, ExportArgs, HistoryArgs, ImportArgs, KeygenArgs, VerifyArgs,
};
use crate::error::AuditError;
use crate::progress::Progress;
use crate::source::{self, Open, Range, Scope};
use crate::state::{AtQuery, Moment, record_at};
use crate::timeline::{Subject, timeline};
use crate::transfer::{export, import};
use crate::verify::{self, HeadFound, Options, Signatures};
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
    match cli.command {
        AuditCommand::History(args) => {
            let scope = Scope::of(args.account.as_ref());
            let history = source::load(&cli.store, &scope, Range::ALL, &progress).await?;
            history_cmd(&history, &args, out)?;
        }
        AuditCommand::At(args) => {
            let scope = Scope::Account(args.account.clone());
            let history = source::load(&cli.store, &scope, Range::ALL, &progress).await?;
            at_cmd(&history, &args, out)?;
        }
        AuditCommand::Export(args) => export_cmd(&cli.store, &args, &progress, out).await?,
        AuditCommand::Import(args) => {
            let store = source::open(&cli.store, Open::CreateIfMissing).await?;
            import_cmd(&store, &args, &progress, out).await?;
        }
        AuditCommand::Verify(args) => {
            let snapshot = args
                .snapshot
                .as_deref()
                .map(verify::load_snapshot)
                .transpose()?;
            let mut signatures = Signatures::load(&args.public_keys, HeadFound::NotKept)?;
            let scope = Scope::of(args.account.as_ref());
            // The signed head covers every account: it is compared only with the whole history.
            if !signatures.verifier.is_empty() && scope == Scope::Whole {
                signatures.head = source::signed_head(&cli.store).await?;
            }
            let history = source::load(&cli.store, &scope, Range::ALL, &progress).await?;
            return verify_cmd(
                &history,
                snapshot.as_ref(),
                &signatures,
                &args,
                &progress,
                out,
            );
        }
        AuditCommand::Keygen(args) => keygen_cmd(&args, out)?,
        AuditCommand::Completions(args) => out
            .write_all(&<cli::Cli as followers_runtime::ShownCli>::completions(
                args.shell,
            ))
            .map_err(AuditError::io("cannot write the output"))?,
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
    store: &followers_store::StoreArgs,
    args: &ExportArgs,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let range = Range {
        from: args.from.map(Position),
        to: args.to.map(Position),
    };
    let scope = Scope::of(args.account.as_ref());
    let history = source::load(store, &scope, range, progress).await?;
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
    signatures: &Signatures,
    args: &VerifyArgs,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<Outcome, AuditError> {
    let options = Options {
        allow_unsealed: args.allow_unsealed,
    };
    let report = verify::verify_signed(history, snapshot, options, signatures, progress);
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

/// Writes a new key pair into `args.out`: the private key file readable by its owner only.
fn keygen_cmd(args: &KeygenArgs, out: &mut dyn Write) -> Result<(), AuditError> {
    use followers_shared::signing::Signer;
    let signer = Signer::generate(args.key_id.clone(), &mut rand_core::OsRng);
    std::fs::create_dir_all(&args.out).map_err(AuditError::io(format!(
        "cannot create {}",
        args.out.display()
    )))?;
    let private = args.out.join(format!("{}.key", args.key_id));
    let public = args.out.join(format!("{}.pub", args.key_id));
    for path in [&private, &public] {
        if path.exists() {
            return Err(AuditError::KeyExists {
                path: path.display().to_string(),
            });
        }
    }
    write_new(&private, &signer.private_key_file(), true)?;
    write_new(&public, &signer.public_key_file(), false)?;
    writeln!(
        out,
        "key {}:\n  private: {} (give it to the command service: --signing-key-file; keep it secret)\n  public:  {} (for followers-audit verify and --public-key)",
        args.key_id,
        private.display(),
        public.display()
    )
    .map_err(AuditError::io("cannot write the output"))
}

/// Creates `path` (never overwriting), private files with mode 0600 on Unix, and syncs it.
fn write_new(path: &std::path::Path, content: &str, private: bool) -> Result<(), AuditError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let fail = || AuditError::io(format!("cannot write {}", path.display()));
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => AuditError::KeyExists {
            path: path.display().to_string(),
        },
        _ => fail()(e),
    })?;
    file.write_all(content.as_bytes()).map_err(fail())?;
    file.sync_all().map_err(fail())
}
