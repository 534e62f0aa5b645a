//! Queries: shared's request structs, each with its answer type, and the builder that asks one.

use std::future::{Future, IntoFuture};
use std::ops::Deref;
use std::pin::Pin;

use followers_shared::store::Position;
use followers_shared::wire::{
    AccessAnswer, AccessibleRecords, AccessibleRecordsAnswer, AccountAnswer, AccountQuery, Changes,
    ChangesAnswer, CheckAccess, CheckAccessBatch, ContactOpportunities, ContactOpportunitiesAnswer,
    ErrorBody, FollowersAnswer, FollowersQuery, QueryReply, QueryRequest, RecordHistory,
    RecordHistoryAnswer, RecordsOfUser, RecordsOfUserAnswer, WhoCanAccess, WhoCanAccessAnswer,
    subject,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::retry::{Replied, Retry, exchange};
use crate::{Account, Error};

/// A query's request (shared's struct, named on the wire by [`QueryRequest::NAME`]) and the
/// type of its answer.
pub trait Question: QueryRequest + Serialize + Send + Sync + 'static {
    type Answer: DeserializeOwned + Send + 'static;

    /// The position the answer must reflect (read-your-writes).
    fn min_position_mut(&mut self) -> &mut Option<Position>;
}

macro_rules! questions {
    ($($request:ty => $answer:ty,)*) => {$(
        impl Question for $request {
            type Answer = $answer;

            fn min_position_mut(&mut self) -> &mut Option<Position> {
                &mut self.min_position
            }
        }
    )*};
}

questions! {
    CheckAccess => AccessAnswer,
    CheckAccessBatch => Vec<AccessAnswer>,
    FollowersQuery => FollowersAnswer,
    RecordsOfUser => RecordsOfUserAnswer,
    WhoCanAccess => WhoCanAccessAnswer,
    AccessibleRecords => AccessibleRecordsAnswer,
    ContactOpportunities => ContactOpportunitiesAnswer,
    AccountQuery => AccountAnswer,
    Changes => ChangesAnswer,
    RecordHistory => RecordHistoryAnswer,
}

/// An answer and the position of the read model that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The read model's position when it answered: at least the query's `min_position`.
    pub position: Position,
    pub answer: T,
    /// How many attempts the client made to get it: 1 unless it retried.
    pub attempts: u32,
}

impl<T> Answer<T> {
    pub fn into_inner(self) -> T {
        self.answer
    }
}

impl<T> Deref for Answer<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.answer
    }
}

impl<T: DeserializeOwned> Replied for QueryReply<T> {
    fn ok(&self) -> bool {
        self.ok
    }

    fn failure(&self) -> Option<&ErrorBody> {
        self.error.as_ref()
    }
}

/// One query, ready to ask: `.await` it, or set its retry policy first. It carries the
/// account handle's `min_position` unless the request names its own.
#[derive(Debug, Clone)]
#[must_use = "a query is asked when awaited"]
pub struct Ask<Q> {
    account: Account,
    request: Q,
    retry: Retry,
}

impl<Q: Question> Ask<Q> {
    pub(crate) fn new(account: Account, mut request: Q) -> Self {
        let min = request.min_position_mut();
        if min.is_none() {
            *min = account.min_position;
        }
        let retry = account.client.retry;
        Self {
            account,
            request,
            retry,
        }
    }

    /// This query's retry policy instead of the client's.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The request's JSON body.
    pub fn body(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&self.request).map_err(Error::Encode)
    }

    /// Asks, trying again under the policy.
    pub async fn send(self) -> Result<Answer<Q::Answer>, Error> {
        let client = &self.account.client;
        let subject = subject::query(&client.prefix, self.account.id().as_str(), Q::NAME);
        let body = self.body()?.into();
        let (reply, attempts): (QueryReply<Q::Answer>, _) =
            exchange(&client.nats, &self.retry, &subject, body, None).await?;
        match (reply.position, reply.answer) {
            (Some(position), Some(answer)) => Ok(Answer {
                position,
                answer,
                attempts,
            }),
            _ => Err(Error::UnexpectedReply {
                what: format!(
                    "`{}`: an answer without its position or its answer",
                    Q::NAME
                ),
                source: None,
            }),
        }
    }
}

impl<Q: Question> IntoFuture for Ask<Q> {
    type Output = Result<Answer<Q::Answer>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
