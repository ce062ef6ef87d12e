//! The JSON forms the web console reads: the session, the last hour's
//! firings and the counts of jobs.

use super::*;

/// Who a caller is, as its token says: what the web console shows and
/// which actions it offers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// Whether calls need a token (`AUTH_PUBLIC_KEY_FILE` is set).
    pub auth_required: bool,
    /// The token's role (`admin`, `viewer` or `executor`); `admin` when no
    /// token is needed.
    pub role: String,
    /// The token's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// One minute of this replica's firings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FiringMinute {
    /// When the minute began.
    pub start: DateTime<Utc>,
    /// Jobs fired.
    pub fired: u64,
    /// Runs that ended SUCCEEDED.
    pub succeeded: u64,
    /// Runs that failed (retried or failed for good).
    pub failed: u64,
    /// Median lateness of the firings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_p50_ms: Option<u64>,
    /// 99th percentile of their lateness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_p99_ms: Option<u64>,
    /// Largest lateness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_max_ms: Option<u64>,
}

impl From<MinuteSummary> for FiringMinute {
    fn from(m: MinuteSummary) -> Self {
        let [p50, p99, max] = m.lateness_ms.map_or([None; 3], |l| l.map(Some));
        FiringMinute {
            start: m.start,
            fired: m.fired,
            succeeded: m.succeeded,
            failed: m.failed,
            lateness_p50_ms: p50,
            lateness_p99_ms: p99,
            lateness_max_ms: max,
        }
    }
}

/// The last hour of this replica's firings, by minute.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Firings {
    /// Sixty minutes, oldest first, the current one last.
    pub minutes: Vec<FiringMinute>,
}

/// Jobs in all and by facet: each the `total_count` of the listing with
/// that one filter.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobCounts {
    /// Every job.
    pub total: i64,
    /// By status.
    pub by_status: StatusCounts,
    /// By type.
    pub by_type: TypeCounts,
    /// Recurring jobs.
    pub recurring: i64,
    /// Paused recurring jobs.
    pub paused: i64,
}

/// Jobs by status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    /// PENDING (never stored by this service).
    pub pending: i64,
    /// SCHEDULED.
    pub scheduled: i64,
    /// RUNNING.
    pub running: i64,
    /// SUCCEEDED.
    pub succeeded: i64,
    /// FAILED.
    pub failed: i64,
}

/// Jobs by type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TypeCounts {
    /// Email jobs.
    pub email: i64,
    /// SMS jobs.
    pub sms: i64,
}

impl From<proto::CountJobsResponse> for JobCounts {
    fn from(c: proto::CountJobsResponse) -> Self {
        JobCounts {
            total: c.total,
            by_status: StatusCounts {
                pending: c.pending,
                scheduled: c.scheduled,
                running: c.running,
                succeeded: c.succeeded,
                failed: c.failed,
            },
            by_type: TypeCounts {
                email: c.email,
                sms: c.sms,
            },
            recurring: c.recurring,
            paused: c.paused,
        }
    }
}
