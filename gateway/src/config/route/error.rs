//! What can be wrong with a route's matches, backends and filters, and with
//! `[compression]` (each wrapped, with its location, in `ConfigError::Route`).

/// One problem in a `[[route]]` or in `[compression]`.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{field} is empty: {hint}")]
    Empty {
        field: &'static str,
        hint: &'static str,
    },
    #[error("{field} {value:?} is listed twice")]
    Twice { field: &'static str, value: String },
    #[error("{what}: give one of {choices}")]
    OneOf {
        what: &'static str,
        choices: &'static str,
    },
    #[error("{first} and {second} cannot both be set: {hint}")]
    Conflict {
        first: &'static str,
        second: &'static str,
        hint: &'static str,
    },
    #[error("{field} {value:?} {reason}")]
    BadValue {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{field} {value:?} is not a valid regular expression")]
    BadRegex {
        field: &'static str,
        value: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("header {name:?} cannot be changed by {field}: it {reason}")]
    ForbiddenHeader {
        field: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("the route needs a destination: upstream = \"NAME\", backends = [...] or redirect = {{ ... }}")]
    NoDestination,
    #[error("every backend has weight 0: give at least one a weight above 0")]
    AllWeightsZero,
    #[error("{field} must be {range}")]
    OutOfRange {
        field: &'static str,
        range: &'static str,
    },
}
