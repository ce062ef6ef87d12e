//! Schedules: when a job fires. Pure computation, no I/O.
//!
//! So far the parts a cron schedule is made of: its expression
//! ([`CronExpression`]: 5 or 6 fields or a macro, checked by croner, errors
//! pinned to a field and a character, an expression that can never fire
//! refused) and its daylight-saving policy ([`DstPolicy`]: the names of
//! what it does at a local time that occurs twice or not at all).

mod dst;
mod expression;

pub use dst::{DstPolicy, RepeatedTime, SkippedTime};
pub use expression::{CRON_EXPRESSION_MAX_BYTES, CronExpression};
