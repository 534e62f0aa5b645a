//! Answering queries from the live model. NATS and HTTP each read their input into one typed
//! [`Query`] and an [`AccountId`], and both go through [`Queries::admit`] and
//! [`Queries::answer`], so they give the same answers and share one [`Budget`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use followers_runtime::metrics::{RequestMeters, UNKNOWN};
use followers_shared::access::Action;
use followers_shared::error::ErrorCode;
use followers_shared::ids::{AccountId, UserId};
use followers_shared::model::RecordRef;
use followers_shared::read_model::ReadModel;
use followers_shared::store::{Position, StoreError, StoredCommit, StreamId};
use followers_shared::wire::{
    AccessAnswer, AccessibleRecords, AccessibleRecordsAnswer, AccountAnswer, Changes,
    ChangesAnswer, CheckAccess, CheckAccessBatch, ContactOpportunities, ContactOpportunitiesAnswer,
    ErrorBody, EventCause, FollowerView, FollowersAnswer, FollowersQuery, GranteeView, HeldRecord,
    HistoryEvent, LinkedOpportunity, MAX_BATCH_CHECKS, MemberView, Query, QueryReply,
    ReachableRecord, RecordHistory, RecordHistoryAnswer, RecordsOfUser, RecordsOfUserAnswer,
    UserView, WhoCanAccess, WhoCanAccessAnswer,
};
use followers_store::LiveModel;

use crate::feed::Feed;
use crate::forward::Elsewhere;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::past::{self, History, Past, PastError};

/// The query side of the service.
#[derive(Debug, Clone)]
pub struct Queries {
    pub model: LiveModel,
    pub max_wait: Duration,
    /// False until the model has caught up with the history at start; until then every query
    /// is answered `unavailable` rather than from a partly loaded model.
    pub ready: Arc<AtomicBool>,
    /// What the queries in flight may hold; beyond it, `unavailable`.
    pub budget: Budget,
    /// Every answered query is counted here, by query and outcome, with its latency.
    pub meters: Arc<RequestMeters>,
    /// Answers `at_position` and `record_history`, from the history.
    pub past: Arc<Past>,
    /// The feed of access changes (`changes`, and the HTTP stream).
    pub feed: Feed,
    /// In a partitioned history, where the queries about other partitions' accounts go.
    pub elsewhere: Option<Elsewhere>,
}

/// The meters of the queries: `followers_queries_total{query,outcome}` and
/// `followers_query_seconds{query}`. Make them after the recorder is installed.
pub fn query_meters() -> RequestMeters {
    RequestMeters::new(
        "followers_queries_total",
        "followers_query_seconds",
        "query",
        Query::NAMES,
    )
}

/// The bounds of one instance's query side, over NATS and HTTP together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Queries admitted and not yet answered.
    pub in_flight: usize,
    /// Of those, how many may wait for a `min_position` the model has not reached. Kept below
    /// `in_flight`, so waiting queries can never take every place from immediate ones.
    pub waiting: usize,
    /// Request bytes the admitted queries hold together.
    pub bytes: usize,
}

/// Why a query was not admitted. Each is answered `unavailable` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many queries in flight (at most {0}); retry later")]
    InFlight(usize),
    #[error(
        "the queries in flight hold too many request bytes (at most {limit}, this one has {bytes}); retry later"
    )]
    Bytes { bytes: usize, limit: usize },
    #[error(
        "too many queries are waiting for their min_position (at most {0}); retry later, or ask without min_position for the current answer"
    )]
    Waiting(usize),
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::InFlight(_) => "in_flight",
            Refusal::Bytes { .. } => "bytes",
            Refusal::Waiting(_) => "waiting",
        }
    }

    fn error(self) -> ErrorBody {
        metrics::counter!("followers_queries_refused_total", "reason" => self.label()).increment(1);
        ErrorBody::new(ErrorCode::Unavailable, self.to_string())
    }
}

/// The shared budget of the queries in flight: a place per query, the bytes of its request, and
/// a smaller share of places for queries that wait for their `min_position`. Nothing here
/// waits: a query that does not fit is refused at once.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: QueryLimits,
    in_flight: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// A query's place in the [`Budget`]: held until the query is answered, released on drop.
#[derive(Debug)]
pub struct Admission {
    _place: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// A budget with `limits`, each brought within what a semaphore holds (at least 1).
    pub fn new(limits: QueryLimits) -> Self {
        let fit = |n: usize| n.clamp(1, Semaphore::MAX_PERMITS);
        let limits = QueryLimits {
            in_flight: fit(limits.in_flight),
            waiting: fit(limits.waiting),
            bytes: fit(limits.bytes),
        };
        Self {
            limits,
            in_flight: Arc::new(Semaphore::new(limits.in_flight)),
            waiting: Arc::new(Semaphore::new(limits.waiting)),
            bytes: Arc::new(Semaphore::new(limits.bytes)),
        }
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Admits a query whose request holds `bytes`, or says why not.
    pub fn admit(&self, bytes: usize) -> Result<Admission, Refusal> {
        let place = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::InFlight(self.limits.in_flight))?;
        let refused = Refusal::Bytes {
            bytes,
            limit: self.limits.bytes,
        };
        let held = match u32::try_from(bytes) {
            Ok(0) => None,
            Ok(n) => Some(
                self.bytes
                    .clone()
                    .try_acquire_many_owned(n)
                    .map_err(|_| refused)?,
            ),
            Err(_) => return Err(refused),
        };
        Ok(Admission {
            _place: place,
            _bytes: held,
        })
    }

    /// A place among the queries that wait for their `min_position`.
    fn wait(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.waiting
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Waiting(self.limits.waiting))
    }
}

fn malformed(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::MalformedRequest, msg)
}

/// A serialized reply and its error code, if it failed (HTTP turns that into a status).
#[derive(Debug, Clone)]
pub struct Answer {
    pub error: Option<ErrorCode>,
    pub body: Vec<u8>,
}

fn json<T: Serialize>(reply: &QueryReply<T>) -> Answer {
    Answer {
        error: reply.error.as_ref().map(|e| e.code),
        body: followers_shared::json::to_vec(reply),
    }
}

/// The reply to every query until the model has caught up at start.
fn not_ready() -> Answer {
    json(&QueryReply::<()>::failure(ErrorBody::new(
        ErrorCode::Unavailable,
        "the read models are still loading the history; retry shortly (see /ready)",
    )))
}

impl Queries {
    /// Admits a query whose request holds `bytes` into the shared budget, or answers it
    /// `unavailable` at once. Call it before holding the request any longer than needed.
    pub fn admit(&self, bytes: usize) -> Result<Admission, Answer> {
        self.budget
            .admit(bytes)
            .map_err(|refusal| json(&QueryReply::<()>::failure(refusal.error())))
    }

    /// Answers a query as a transport read it, with the account token it came with: a request
    /// that could not be read is answered its error; the token is read after the query's name
    /// and body, and after the readiness check (`malformed_request` naming it).
    pub async fn answer_read(&self, account: &str, query: Result<Query, ErrorBody>) -> Answer {
        let started = Instant::now();
        let query = match query {
            Ok(query) => query,
            Err(e) => {
                let reply = json(&QueryReply::<()>::failure(e));
                self.meters.record(UNKNOWN, reply.error, started.elapsed());
                return reply;
            }
        };
        let reply = match account.parse::<AccountId>() {
            Ok(account) => return self.answer(&account, query).await,
            Err(_) if !self.ready.load(Ordering::Acquire) => not_ready(),
            Err(e) => json(&QueryReply::<()>::failure(malformed(e.to_string()))),
        };
        self.meters
            .record(query.name(), reply.error, started.elapsed());
        reply
    }

    /// Answers `query` for `account`; always returns a JSON reply. Hold the query's
    /// [`Admission`] until this returns.
    pub async fn answer(&self, account: &AccountId, query: Query) -> Answer {
        let started = Instant::now();
        let label = query.name();
        let reply = self.dispatch(account, query).await;
        self.meters.record(label, reply.error, started.elapsed());
        reply
    }

    async fn dispatch(&self, a: &AccountId, query: Query) -> Answer {
        if let Some(elsewhere) = self.elsewhere.as_ref().filter(|e| e.asked_of_others(a)) {
            return elsewhere.ask(a, &query, self.max_wait).await;
        }
        if !self.ready.load(Ordering::Acquire) {
            return not_ready();
        }
        let (at, at_time) = query.past();
        let when = When {
            min: query.min_position(),
            at,
            at_time,
        };
        match query {
            Query::CheckAccess(q) => json(&self.run(a, when, |m| check_access(m, a, q)).await),
            Query::CheckAccessBatch(q) => {
                json(&self.run(a, when, |m| check_access_batch(m, a, q)).await)
            }
            Query::Followers(q) => json(&self.run(a, when, |m| followers(m, a, q)).await),
            Query::RecordsOfUser(q) => json(&self.run(a, when, |m| records_of_user(m, a, q)).await),
            Query::WhoCanAccess(q) => json(&self.run(a, when, |m| who_can_access(m, a, q)).await),
            Query::AccessibleRecords(q) => {
                json(&self.run(a, when, |m| accessible_records(m, a, q)).await)
            }
            Query::ContactOpportunities(q) => {
                json(&self.run(a, when, |m| contact_opportunities(m, a, q)).await)
            }
            Query::Account(_) => json(&self.run(a, when, |m| account_answer(m, a)).await),
            Query::RecordHistory(q) => json(&self.record_history(a, q).await),
            Query::Changes(q) => json(&self.changes(a, q).await),
        }
    }

    /// Opens a stream of the feed of access changes (HTTP), read as [`Queries::answer_read`]
    /// reads a query: the request, then readiness, then the account token; the account must
    /// exist and `min_position` be reached. The stream holds no place of the budget: streams
    /// have their own bound ([`crate::feed::FeedLimits::streams`]).
    pub async fn open_stream(
        &self,
        account: &str,
        query: Result<Changes, ErrorBody>,
    ) -> Result<impl futures::Stream<Item = crate::feed::FeedEvent> + Send + use<>, Answer> {
        let fail = |e: ErrorBody| json(&QueryReply::<()>::failure(e));
        let query = query.map_err(fail)?;
        if !self.ready.load(Ordering::Acquire) {
            return Err(not_ready());
        }
        let account = account
            .parse::<AccountId>()
            .map_err(|e| fail(malformed(e.to_string())))?;
        if let Some(elsewhere) = self
            .elsewhere
            .as_ref()
            .filter(|e| e.asked_of_others(&account))
        {
            return Err(fail(elsewhere.feed_not_here(&account)));
        }
        let checked = self
            .run(&account, When::live(query.min_position), |m| {
                require_account(m, &account)
            })
            .await;
        if let Some(error) = checked.error {
            return Err(fail(error));
        }
        self.feed.stream(&account, &query).map_err(fail)
    }

    /// A page of the feed of access changes. A long poll (`wait_ms`) holds a place of the
    /// waiting share, like a query waiting for its `min_position`.
    async fn changes(&self, account: &AccountId, q: Changes) -> QueryReply<ChangesAnswer> {
        let limit = match page_size(q.limit) {
            Ok(limit) => limit,
            Err(e) => return QueryReply::failure(e),
        };
        let reply = self
            .run(account, When::live(q.min_position), |m| {
                require_account(m, account)
            })
            .await;
        if let Some(error) = reply.error {
            return QueryReply::failure(error);
        }
        let _waiting = match q.wait_ms.filter(|&ms| ms > 0).map(|_| self.budget.wait()) {
            Some(Err(refusal)) => return QueryReply::failure(refusal.error()),
            place => place,
        };
        match self.feed.page(account, &q, limit, self.max_wait).await {
            Ok(answer) => QueryReply::answer(self.model.position(), answer),
            Err(e) => QueryReply::failure(e),
        }
    }

    /// Waits for `min` if given and not reached yet (holding a place of the waiting share, or
    /// refused `unavailable` when it is full).
    ///
    /// An instance serving some partitions follows only their commits, so its position stays
    /// at its partitions' last commit, which may be below a `min` taken from a commit of
    /// another partition: it has reached `min` once it has every commit of its partitions up
    /// to `min`, so it waits for the last of theirs the history holds now, if that is lower.
    /// The whole history's head, then the served partitions' head.
    async fn heads(&self) -> Result<(Position, Position), StoreError> {
        let whole = self.past.whole_head().await?;
        Ok((whole, self.past.served_head().await?))
    }

    async fn reach(&self, min: Option<Position>) -> Result<(), ErrorBody> {
        let Some(min) = min.filter(|&min| self.model.position() < min) else {
            return Ok(());
        };
        let waiting = self.budget.wait().map_err(Refusal::error)?;
        // An instance serving some partitions may never reach a position of another
        // partition's commit: it has every commit up to `min` once it has its partitions' up to
        // there. That is known only once the history holds `min`: every position up to it is
        // then taken, so the partitions' head read after it covers theirs.
        let wanted = match &self.elsewhere {
            None => min,
            Some(_) => match self.heads().await {
                Ok((whole, _)) if whole < min => min,
                Ok((_, served)) => min.min(served),
                Err(e) => return Err(ErrorBody::new(ErrorCode::Unavailable, e.to_string())),
            },
        };
        let reached = self.model.wait_for(wanted, self.max_wait).await;
        drop(waiting);
        reached.map_err(|e| {
            ErrorBody::new(
                ErrorCode::Timeout,
                format!("{e}; retry, or ask without min_position for the current answer"),
            )
        })
    }

    /// Answers from the live model under its read lock, once it has reached `min_position`; or,
    /// with `at_position`, from the account's model as of that position (once the live model
    /// has reached it too, so that the history holds it), with that position as the reply's;
    /// or, with `at_time`, from the account's model as of its last commit stored by then, with
    /// that commit's position as the reply's.
    async fn run<T>(
        &self,
        account: &AccountId,
        when: When,
        f: impl FnOnce(&ReadModel) -> Result<T, ErrorBody>,
    ) -> QueryReply<T> {
        if let Err(e) = when.check(chrono::Utc::now()) {
            return QueryReply::failure(e);
        }
        if let Err(e) = self.reach(when.min.max(when.at)).await {
            return QueryReply::failure(e);
        }
        let answered = |position: Position, m: &ReadModel| match f(m) {
            Ok(answer) => QueryReply::answer(position, answer),
            Err(e) => QueryReply::failure(e),
        };
        // An instance serving some partitions has reached `min` without its position (see
        // `reach`): the answer reflects every commit up to `min` all the same.
        let floor = when
            .min
            .filter(|_| self.elsewhere.is_some())
            .unwrap_or_default();
        let past = match (when.at, when.at_time) {
            (None, None) => return self.model.read(|m| answered(m.position().max(floor), m)),
            (Some(at), _) => self
                .past
                .model(&self.moment(account, at))
                .await
                .map(|m| (at, m)),
            (None, Some(time)) => {
                let history = self.model.history();
                self.past.model_at_time(history, account, time).await
            }
        };
        match past {
            Ok((at, m)) => answered(at, &m),
            Err(e) => QueryReply::failure(past_error(&e)),
        }
    }

    /// The moment `at` of `account` in the history the live model follows.
    fn moment(&self, account: &AccountId, at: Position) -> past::Moment {
        past::Moment {
            history: self.model.history(),
            account: account.clone(),
            at,
        }
    }

    /// `record_history`: the record's commits after `after`, a page at a time, each event with
    /// its position and, for the follower sync's reactions, where their cause is stored.
    async fn record_history(
        &self,
        account: &AccountId,
        q: RecordHistory,
    ) -> QueryReply<RecordHistoryAnswer> {
        if let Err(e) = self.reach(q.min_position).await {
            return QueryReply::failure(e);
        }
        let limit = match page_size(q.limit) {
            Ok(limit) => limit,
            Err(e) => return QueryReply::failure(e),
        };
        let (position, known) = self.model.read(|m| {
            let known = require_account(m, account).and_then(|()| {
                m.record(account, &q.record)
                    .filter(|r| r.state.created)
                    .map(|_| ())
                    .ok_or_else(|| unknown_record(&q.record))
            });
            (m.position(), known)
        });
        if let Err(e) = known {
            return QueryReply::failure(e);
        }
        let within = self.past.limits().read_timeout;
        let record = q.record.clone();
        let reading = record_history(self.past.history(), account, q, limit, position);
        match tokio::time::timeout(within, reading).await {
            Ok(Ok(answer)) => QueryReply::answer(position, answer),
            Ok(Err(e)) => QueryReply::failure(store_error(&e)),
            Err(_) => QueryReply::failure(ErrorBody::new(
                ErrorCode::StoreUnavailable,
                format!(
                    "reading the history of {record} took more than {} ms; retry",
                    within.as_millis()
                ),
            )),
        }
    }
}

/// The moments a query asks about: at least `min` (read-your-writes), as of `at` or `at_time`
/// (the past).
#[derive(Debug, Clone, Copy)]
struct When {
    min: Option<Position>,
    at: Option<Position>,
    at_time: Option<DateTime<Utc>>,
}

impl When {
    /// The live model's answer, at least as of `min`.
    fn live(min: Option<Position>) -> Self {
        Self {
            min,
            at: None,
            at_time: None,
        }
    }

    /// A past moment is one moment, and past: `at_position` and `at_time` are not given
    /// together, and `at_time` is not later than `now`.
    fn check(&self, now: DateTime<Utc>) -> Result<(), ErrorBody> {
        match (self.at, self.at_time) {
            (Some(_), Some(_)) => Err(malformed(
                "give `at_position` or `at_time`, not both: each names the moment to answer as of",
            )),
            (None, Some(t)) if t > now => Err(malformed(format!(
                "`at_time` {} is later than now ({}); a past moment is answered, not a future one",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                now.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ))),
            _ => Ok(()),
        }
    }
}

fn past_error(e: &PastError) -> ErrorBody {
    let code = match e {
        PastError::TooMuchHistory { .. } => ErrorCode::TooMuchHistory,
        PastError::Busy(_) => ErrorCode::Unavailable,
        PastError::TimedOut { .. } | PastError::Store(_) => ErrorCode::StoreUnavailable,
    };
    ErrorBody::new(code, e.to_string())
}

fn store_error(e: &StoreError) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::StoreUnavailable,
        format!("reading the history: {e}"),
    )
}

/// The page of `q.record`'s history, up to `position` (what the live model had when asked, so
/// the page is as of one moment, as every answer).
async fn record_history(
    history: &dyn History,
    account: &AccountId,
    q: RecordHistory,
    limit: usize,
    position: Position,
) -> Result<RecordHistoryAnswer, StoreError> {
    let stream = StreamId::record(account.clone(), q.record.clone());
    let after = q.after.unwrap_or_default();
    let all = history.stream(&stream).await?;
    let mut page: Vec<StoredCommit> = all
        .iter()
        .filter(|c| c.position > after && c.position <= position)
        .take(limit + 1)
        .cloned()
        .collect();
    let next = cut(&mut page, limit, |c| c.position);
    // The streams read to find causes, this record's first: a reaction to the record's own
    // creation (a new opportunity getting its contact's owner) has its cause there.
    let mut read = HashMap::from([(q.record.clone(), all)]);
    let mut events = Vec::new();
    for c in page {
        for event in c.commit.events {
            let cause = match event.meta.causation {
                None => None,
                Some(id) => {
                    let mut records = past::cause_records(&event.body);
                    records.push(q.record.clone());
                    let found = past::find_cause(history, account, id, &records, &mut read).await?;
                    Some(EventCause {
                        event_id: id,
                        position: found.as_ref().map(|f| f.0),
                        record: found.as_ref().map(|f| f.1.clone()),
                        event_type: found.map(|f| f.2.to_owned()),
                    })
                }
            };
            events.push(HistoryEvent {
                position: c.position,
                at: event.meta.at,
                actor: event.meta.actor.clone(),
                event_type: event.body.type_name().to_owned(),
                cause,
                event,
            });
        }
    }
    Ok(RecordHistoryAnswer {
        record: q.record,
        events,
        next,
    })
}

fn check_access(
    m: &ReadModel,
    account: &AccountId,
    q: CheckAccess,
) -> Result<AccessAnswer, ErrorBody> {
    Ok(access_answer(
        m, account, &q.user, q.action, &q.record, q.hint,
    ))
}

fn check_access_batch(
    m: &ReadModel,
    account: &AccountId,
    q: CheckAccessBatch,
) -> Result<Vec<AccessAnswer>, ErrorBody> {
    if q.checks.len() > MAX_BATCH_CHECKS {
        return Err(malformed(format!(
            "a batch may carry at most {MAX_BATCH_CHECKS} checks, not {}",
            q.checks.len()
        )));
    }
    Ok(q.checks
        .iter()
        .map(|c| access_answer(m, account, &c.user, c.action, &c.record, q.hint))
        .collect())
}

/// R19-R21: the decision, its reason and, when asked for, a denial's hint.
fn access_answer(
    m: &ReadModel,
    account: &AccountId,
    user: &UserId,
    action: Action,
    record: &RecordRef,
    with_hint: bool,
) -> AccessAnswer {
    let (d, hint) = if with_hint {
        m.check_with_hint(account, user, action, record)
    } else {
        (m.check(account, user, action, record), None)
    };
    AccessAnswer {
        allowed: d.allowed,
        reason: d.reason,
        hint,
    }
}

fn unknown_record(record: &RecordRef) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownRecord,
        format!("{record} does not exist in this account"),
    )
}

fn unknown_account(account: &AccountId) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownAccount,
        format!("account `{account}` does not exist"),
    )
}

fn require_account(m: &ReadModel, account: &AccountId) -> Result<(), ErrorBody> {
    match m.account(account) {
        Some(a) if a.state.opened => Ok(()),
        _ => Err(unknown_account(account)),
    }
}

fn followers(
    m: &ReadModel,
    account: &AccountId,
    q: FollowersQuery,
) -> Result<FollowersAnswer, ErrorBody> {
    require_account(m, account)?;
    let view = m
        .followers(account, &q.record)
        .ok_or_else(|| unknown_record(&q.record))?;
    let members = m.account(account).map(|a| &a.state);
    let owner = view.owner.map(|u| {
        let member = members.and_then(|s| s.member(u));
        UserView {
            user: u.clone(),
            name: member.map(|m| m.name.clone()),
            active: member.is_some_and(|m| m.active),
        }
    });
    let contact = m
        .record(account, &q.record)
        .and_then(|r| r.state.contact.clone());
    Ok(FollowersAnswer {
        record: q.record,
        contact,
        owner,
        followers: view
            .followers
            .into_iter()
            .map(|(f, member)| FollowerView {
                user: f.user.clone(),
                name: member.map(|m| m.name.clone()),
                active: member.is_some_and(|m| m.active),
                added_at: f.added_at,
                added_by: (*f.added_by).clone(),
                how: (*f.how).clone(),
                until: f.until,
            })
            .collect(),
    })
}

fn records_of_user(
    m: &ReadModel,
    account: &AccountId,
    q: RecordsOfUser,
) -> Result<RecordsOfUserAnswer, ErrorBody> {
    require_account(m, account)?;
    let limit = page_size(q.limit)?;
    let mut records = m.records_of(account, &q.user, q.after.as_ref(), limit + 1);
    let next = cut(&mut records, limit, |r| r.0.clone());
    Ok(RecordsOfUserAnswer {
        user: q.user,
        records: records
            .into_iter()
            .map(|(record, relation)| HeldRecord { record, relation })
            .collect(),
        next,
    })
}

/// The page size a paged query asks for: 1 to 1000, 100 when absent.
fn page_size(limit: Option<usize>) -> Result<usize, ErrorBody> {
    match limit.unwrap_or(100) {
        limit @ 1..=1000 => Ok(limit),
        limit => Err(malformed(format!("`limit` must be 1 to 1000, not {limit}"))),
    }
}

/// A page asked for `limit + 1` items, cut to `limit`: the cursor of the next page (the last
/// item kept) when there was more, else `None`.
fn cut<T, K>(page: &mut Vec<T>, limit: usize, cursor: impl Fn(&T) -> K) -> Option<K> {
    if page.len() <= limit {
        return None;
    }
    page.truncate(limit);
    page.last().map(cursor)
}

fn who_can_access(
    m: &ReadModel,
    account: &AccountId,
    q: WhoCanAccess,
) -> Result<WhoCanAccessAnswer, ErrorBody> {
    require_account(m, account)?;
    let limit = page_size(q.limit)?;
    let mut page = m
        .grantees(account, &q.record, q.action, q.after.as_ref(), limit + 1)
        .ok_or_else(|| unknown_record(&q.record))?;
    let next = cut(&mut page, limit, |g| g.user.clone());
    let members = m.account(account).map(|a| &a.state);
    let users = page
        .into_iter()
        .map(|g| GranteeView {
            user: g.user.clone(),
            name: members
                .and_then(|s| s.member(g.user))
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            reason: g.reason,
        })
        .collect();
    Ok(WhoCanAccessAnswer {
        record: q.record,
        action: q.action,
        users,
        next,
    })
}

fn accessible_records(
    m: &ReadModel,
    account: &AccountId,
    q: AccessibleRecords,
) -> Result<AccessibleRecordsAnswer, ErrorBody> {
    require_account(m, account)?;
    let limit = page_size(q.limit)?;
    let mut page = m
        .reachable(account, &q.user, q.action, q.after.as_ref(), limit + 1)
        .ok_or_else(|| unknown_account(account))?;
    let next = cut(&mut page.records, limit, |(r, _)| (*r).clone());
    Ok(AccessibleRecordsAnswer {
        user: q.user,
        action: q.action,
        every_record: page.every_record,
        unassigned_records: page.unassigned_records,
        records: page
            .records
            .into_iter()
            .map(|(record, reason)| ReachableRecord {
                record: record.clone(),
                reason,
            })
            .collect(),
        next,
    })
}

fn contact_opportunities(
    m: &ReadModel,
    account: &AccountId,
    q: ContactOpportunities,
) -> Result<ContactOpportunitiesAnswer, ErrorBody> {
    require_account(m, account)?;
    let record = RecordRef::Contact(q.contact.clone());
    let contact = m
        .record(account, &record)
        .filter(|c| c.state.created)
        .ok_or_else(|| unknown_record(&record))?;
    Ok(ContactOpportunitiesAnswer {
        contact: q.contact,
        owner: contact.state.owner.clone(),
        opportunities: contact
            .opportunities
            .iter()
            .map(|o| LinkedOpportunity {
                opportunity: o.clone(),
                owner: m
                    .record(account, &RecordRef::Opportunity(o.clone()))
                    .and_then(|r| r.state.owner.clone()),
            })
            .collect(),
    })
}

fn account_answer(m: &ReadModel, account: &AccountId) -> Result<AccountAnswer, ErrorBody> {
    require_account(m, account)?;
    let a = m.account(account).ok_or_else(|| unknown_account(account))?;
    let mut members: Vec<MemberView> = a
        .state
        .members
        .iter()
        .map(|(user, m)| MemberView {
            user: user.clone(),
            name: m.name.clone(),
            email: m.email.clone(),
            role: m.role,
            data_scope: m.data_scope,
            active: m.active,
        })
        .collect();
    members.sort_by(|x, y| x.user.cmp(&y.user));
    Ok(AccountAnswer {
        account: account.clone(),
        name: a.state.name.clone(),
        settings: a.state.settings,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(ready: bool) -> Queries {
        Queries {
            model: LiveModel::new(ReadModel::default()),
            max_wait: Duration::from_millis(10),
            ready: Arc::new(AtomicBool::new(ready)),
            budget: Budget::new(QueryLimits {
                in_flight: 4,
                waiting: 1,
                bytes: 1024,
            }),
            meters: Arc::new(query_meters()),
            past: Arc::new(Past::new(
                Arc::new(followers_store::MemoryStore::new()),
                crate::past::PastLimits::default(),
            )),
            elsewhere: None,
            feed: crate::feed::tests::feed(),
        }
    }

    async fn code(q: &Queries, account: &str, body: &[u8]) -> Option<ErrorCode> {
        q.answer_read(account, Query::parse("account", body))
            .await
            .error
    }

    /// docs/protocol.md 2.2 and 6.1: the name and body are read first (a bad one is refused
    /// even while loading), then readiness is checked, then the account token.
    #[tokio::test]
    async fn a_query_is_read_before_readiness_and_its_account_token_after() {
        let loading = queries(false);
        let bad_body = Some(ErrorCode::MalformedRequest);
        assert_eq!(code(&loading, "ac$me", br#"{"x": 1}"#).await, bad_body);
        let unavailable = Some(ErrorCode::Unavailable);
        assert_eq!(code(&loading, "ac$me", b"").await, unavailable);
        assert_eq!(code(&loading, "acme", b"").await, unavailable);
        let ready = queries(true);
        let bad_token = Some(ErrorCode::MalformedRequest);
        assert_eq!(code(&ready, "ac$me", b"").await, bad_token);
        let unknown = Some(ErrorCode::UnknownAccount);
        assert_eq!(code(&ready, "acme", b"").await, unknown);
    }
}
