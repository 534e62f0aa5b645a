//! One account's history in JetStream, read with nothing but that account's auditor's grants.
//!
//! Why not [`JetStreamStore`](crate::JetStreamStore): binding to the stream asks for its info
//! (`$JS.API.STREAM.INFO.<stream>`), which, asked with a subject filter, lists every subject of
//! the stream, so every account's record ids. An account's auditor (deploy/nats/accounts.conf)
//! may therefore not ask for it, nor create any consumer it likes. It reads through one consumer:
//!
//! - named `audit-<account>` and filtered to `<prefix>.<account>.>`, created through the API
//!   that carries both in its subject (`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, as
//!   async-nats forms it when a name and one filter are set): the server checks that the filter
//!   is the one in the subject, and the grant allows only that subject;
//! - pulled (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>`) from the first commit, without acks;
//! - how much there is to read comes from the consumer's `num_pending` when it was created, not
//!   from the stream's head, which the auditor may not ask for: the feed ends after the commits
//!   stored then;
//! - deleted when done ([`AccountFeed::close`]); a consumer left by an interrupted run is removed
//!   by the server after [`INACTIVE`] without a pull, or replaced by the next run.
//!
//! Nothing here creates, changes or asks about the stream itself.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{
    ConsumerCreateStrictError, ConsumerCreateStrictErrorKind, ConsumerError,
};
use async_nats::jetstream::{self, ErrorCode};
use followers_shared::event::DecodeError;
use followers_shared::ids::AccountId;
use followers_shared::store::{Failed, Position, StoreError, StoredCommit};
use futures::StreamExt;

use crate::jetstream::{JetStreamConfig, check_server_version, decode};

/// How long the server keeps an account's consumer that nobody pulls from: it outlives any
/// pause of a running read, and frees the name soon after an interrupted one.
pub const INACTIVE: Duration = Duration::from_secs(30);

/// The most commits one pull asks for.
const BATCH: u64 = 500;

/// Why one account's history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AccountReadError {
    #[error("{0}")]
    Server(#[source] StoreError),
    #[error("there is no history stream {stream}")]
    NoStream { stream: String },
    #[error("cannot create the consumer {consumer} on {stream} (subject {subject}): {source}")]
    Create {
        consumer: String,
        stream: String,
        subject: String,
        #[source]
        source: ConsumerCreateStrictError,
    },
    #[error(
        "the consumer {consumer} on {stream} is in use: another audit of account {account} is \
         reading; try again when it is done"
    )]
    Busy {
        consumer: String,
        stream: String,
        account: AccountId,
    },
    #[error("cannot remove the consumer {consumer} an interrupted audit left: {source}")]
    Leftover {
        consumer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot pull from the consumer {consumer}: {source}")]
    Pull {
        consumer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the commit at position {} cannot be read: {source}", position.0)]
    Corrupt {
        position: Position,
        #[source]
        source: DecodeError,
    },
    #[error("cannot delete the consumer {consumer}: {source}")]
    Delete {
        consumer: String,
        #[source]
        source: ConsumerError,
    },
}

/// One account's part of the history stream, for reading only.
#[derive(Debug, Clone)]
pub struct AccountView {
    stream: jetstream::stream::Stream<()>,
    config: JetStreamConfig,
    account: AccountId,
}

impl AccountView {
    /// The view of `account` in the history `config` names. Asks the server nothing.
    pub async fn new(
        client: async_nats::Client,
        config: JetStreamConfig,
        account: AccountId,
    ) -> Result<Self, AccountReadError> {
        check_server_version(&client.server_info().version).map_err(AccountReadError::Server)?;
        // A handle only: `get_stream` would ask for the stream's info.
        let stream = jetstream::new(client)
            .get_stream_no_info(&config.stream)
            .await
            .map_err(|e| {
                AccountReadError::Server(StoreError::Incompatible(Failed::doing(
                    format!("--stream `{}`", config.stream),
                    e,
                )))
            })?;
        Ok(Self {
            stream,
            config,
            account,
        })
    }

    /// The consumer's name: `audit-<account>`.
    pub fn consumer_name(&self) -> String {
        format!("audit-{}", self.account)
    }

    /// The account's subjects: `<prefix>.<account>.>`, or `<prefix>.<partition>.<account>.>`
    /// in a history of `--partition-count` partitions (the auditor may not read the stream's
    /// metadata, so the number comes from the configuration; docs/scaling.md).
    pub fn filter(&self) -> String {
        let prefix = &self.config.subject_prefix;
        match self.config.partition_count {
            Some(count) => format!("{prefix}.{}.{}.>", count.of(&self.account), self.account),
            None => format!("{prefix}.{}.>", self.account),
        }
    }

    /// The subject that creates the consumer, the one an auditor's grant allows.
    pub fn create_subject(&self) -> String {
        format!(
            "$JS.API.CONSUMER.CREATE.{}.{}.{}",
            self.config.stream,
            self.consumer_name(),
            self.filter()
        )
    }

    /// Creates the account's consumer and starts reading the commits stored now.
    pub async fn open(&self) -> Result<AccountFeed, AccountReadError> {
        let consumer = match self.create().await {
            Err(e) if already_exists(&e) => {
                self.remove_leftover().await?;
                self.create().await
            }
            created => created,
        }
        .map_err(|source| self.create_error(source))?;
        let total = consumer.cached_info().num_pending;
        let messages = if total == 0 {
            None
        } else {
            let batch = usize::try_from(total.min(BATCH)).unwrap_or(usize::MAX);
            let pulled = consumer
                .stream()
                .max_messages_per_batch(batch)
                .messages()
                .await;
            match pulled {
                Ok(m) => Some(m),
                Err(e) => {
                    let failed = AccountReadError::Pull {
                        consumer: self.consumer_name(),
                        source: Box::new(e),
                    };
                    let _ = self.stream.delete_consumer(&self.consumer_name()).await;
                    return Err(failed);
                }
            }
        };
        Ok(AccountFeed {
            stream: self.stream.clone(),
            consumer: self.consumer_name(),
            prefix: self.config.subject_prefix.clone(),
            partitioned: self.config.partition_count.is_some(),
            total,
            read: 0,
            messages,
        })
    }

    /// A consumer of the account's commits, from the first, for this run only. The description
    /// names the run, so a create meets a consumer left by another run as "already exists"
    /// instead of silently resuming where that one stopped.
    async fn create(&self) -> Result<PullConsumer, ConsumerCreateStrictError> {
        let config = pull::Config {
            name: Some(self.consumer_name()),
            description: Some(format!(
                "followers-audit --account {}, run {}",
                self.account,
                uuid::Uuid::new_v4()
            )),
            filter_subject: self.filter(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: INACTIVE,
            // Read once and thrown away: no need for a replicated, persisted consumer.
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        };
        self.stream.create_consumer_strict(config).await
    }

    /// Deletes a consumer of this name that nobody pulls from (an interrupted run's); one that
    /// is being pulled from belongs to a running audit, which is left alone.
    async fn remove_leftover(&self) -> Result<(), AccountReadError> {
        let name = self.consumer_name();
        let leftover =
            |source: Box<dyn std::error::Error + Send + Sync>| AccountReadError::Leftover {
                consumer: name.clone(),
                source,
            };
        let info = match self.stream.consumer_info(&name).await {
            Ok(info) => info,
            // Gone meanwhile (the server removed it): nothing to remove.
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(leftover(Box::new(e))),
        };
        if info.num_waiting > 0 {
            return Err(AccountReadError::Busy {
                consumer: name,
                stream: self.config.stream.clone(),
                account: self.account.clone(),
            });
        }
        self.stream
            .delete_consumer(&name)
            .await
            .map_err(|e| leftover(Box::new(e)))?;
        Ok(())
    }

    fn create_error(&self, source: ConsumerCreateStrictError) -> AccountReadError {
        let missing = matches!(source.kind(), ConsumerCreateStrictErrorKind::JetStream(j)
            if j.error_code() == ErrorCode::STREAM_NOT_FOUND);
        if missing {
            return AccountReadError::NoStream {
                stream: self.config.stream.clone(),
            };
        }
        AccountReadError::Create {
            consumer: self.consumer_name(),
            stream: self.config.stream.clone(),
            subject: self.create_subject(),
            source,
        }
    }
}

/// The create met a consumer of that name with another configuration (another run's).
fn already_exists(e: &ConsumerCreateStrictError) -> bool {
    match e.kind() {
        ConsumerCreateStrictErrorKind::AlreadyExists => true,
        ConsumerCreateStrictErrorKind::JetStream(j) => {
            j.error_code() == ErrorCode::CONSUMER_ALREADY_EXISTS
                || j.error_code() == ErrorCode::CONSUMER_NAME_EXIST
        }
        _ => false,
    }
}

/// The commits of one account stored when [`AccountView::open`] was called, in position order.
pub struct AccountFeed {
    stream: jetstream::stream::Stream<()>,
    consumer: String,
    /// Whether the history subjects carry a partition.
    partitioned: bool,
    prefix: String,
    total: u64,
    read: u64,
    messages: Option<pull::Stream>,
}

impl std::fmt::Debug for AccountFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountFeed")
            .field("consumer", &self.consumer)
            .field("total", &self.total)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl AccountFeed {
    /// How many commits the feed gives: the consumer's `num_pending` when it was created.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next commit; `None` once [`AccountFeed::total`] were given. A commit that cannot be
    /// decoded is [`AccountReadError::Corrupt`], and reading may go on after it.
    pub async fn next(&mut self) -> Option<Result<StoredCommit, AccountReadError>> {
        if self.read >= self.total {
            return None;
        }
        let pull = |source: Box<dyn std::error::Error + Send + Sync>| AccountReadError::Pull {
            consumer: self.consumer.clone(),
            source,
        };
        let message = match self.messages.as_mut()?.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Some(Err(pull(Box::new(e)))),
            None => return Some(Err(pull("the consumer's messages ended early".into()))),
        };
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => return Some(Err(pull(e))),
        };
        self.read += 1;
        Some(
            decode(
                &self.prefix,
                self.partitioned,
                &message.subject,
                seq,
                message.headers.as_ref(),
                &message.payload,
            )
            .map_err(|e| match e {
                StoreError::Corrupt { position, source } => {
                    AccountReadError::Corrupt { position, source }
                }
                other => AccountReadError::Server(other),
            }),
        )
    }

    /// Stops reading and deletes the consumer.
    pub async fn close(mut self) -> Result<(), AccountReadError> {
        self.messages = None;
        self.stream
            .delete_consumer(&self.consumer)
            .await
            .map(|_| ())
            .map_err(|source| AccountReadError::Delete {
                consumer: self.consumer.clone(),
                source,
            })
    }
}
