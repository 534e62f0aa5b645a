//! The hasher of the in-memory maps keyed by ids: accounts, members, records, users.
//!
//! Why not std's `RandomState` (SipHash-1-3): an access check is three lookups (the account, the
//! member, the record) and SipHash takes about as long on one short id as the access rule takes
//! on the whole decision (issue 14: one decision within 80 ns). foldhash is several times faster
//! on short keys.
//!
//! Why it is still safe to key by ids a caller chooses: each map's hasher is seeded from a
//! random value drawn once per process, so which ids collide differs from process to process and
//! cannot be worked out from outside (as with std's, and like std's, the order of iteration
//! differs between processes: whatever is written or answered in order is sorted first).

use std::collections::HashMap;

/// What seeds and builds the hashers of [`IdMap`] and of the records' index.
pub type IdHasher = foldhash::fast::RandomState;

/// A map keyed by ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, IdHasher>;
