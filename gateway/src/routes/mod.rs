//! Routes: what a request matches (`matches`, `table`) and the filters a matched
//! route runs on its request and response (`chain`, `filters/`), built at reload
//! from the validated config and read per request without locks.

mod chain;
pub mod filters;
mod matches;
mod table;

pub use chain::{Answer, Chain, Exchange, Forward, OnRequest, RequestHead};
pub use matches::{
    compile, query_pairs, HeaderMatch, HostPattern, Matches, PathMatch, Pattern, QueryMatch,
    ValueMatch, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT,
};
pub use table::{Request, Table};
