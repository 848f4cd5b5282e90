//! `KeepPolicy`: restic's retention rules, checked when made.

use backup_core::{CalendarDuration, KeepPolicy};
use pyo3::prelude::*;

use crate::errors::invalid;

/// Which backups `Repository.forget` keeps: the newest `last`, one per hour
/// / day / week / month / year for the newest `hourly` ... `yearly` of
/// them (`-1`: all), those `within` a duration of the newest (`"7d"`,
/// `"1y2m"`), those carrying all tags of one of the `tags` groups
/// (`"a,b"`), and, with `ttl`, nothing older than it. The newest completed
/// backup of each set is kept whatever the policy says.
#[pyclass(name = "KeepPolicy", module = "backup_toolkit", frozen)]
pub(crate) struct PyKeepPolicy {
    pub(crate) inner: KeepPolicy,
}

fn duration(name: &str, text: Option<String>) -> PyResult<Option<CalendarDuration>> {
    text.map(|text| {
        text.parse::<CalendarDuration>()
            .map_err(|error| invalid(format!("{name}={text:?}: {error}")))
    })
    .transpose()
}

#[pymethods]
impl PyKeepPolicy {
    #[new]
    #[pyo3(signature = (*, last=None, hourly=None, daily=None, weekly=None, monthly=None, yearly=None, within=None, within_hourly=None, within_daily=None, within_weekly=None, within_monthly=None, within_yearly=None, tags=Vec::new(), ttl=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        last: Option<i64>,
        hourly: Option<i64>,
        daily: Option<i64>,
        weekly: Option<i64>,
        monthly: Option<i64>,
        yearly: Option<i64>,
        within: Option<String>,
        within_hourly: Option<String>,
        within_daily: Option<String>,
        within_weekly: Option<String>,
        within_monthly: Option<String>,
        within_yearly: Option<String>,
        tags: Vec<String>,
        ttl: Option<String>,
    ) -> PyResult<Self> {
        let policy = KeepPolicy {
            keep_last: last,
            keep_hourly: hourly,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
            keep_yearly: yearly,
            keep_within: duration("within", within)?,
            keep_within_hourly: duration("within_hourly", within_hourly)?,
            keep_within_daily: duration("within_daily", within_daily)?,
            keep_within_weekly: duration("within_weekly", within_weekly)?,
            keep_within_monthly: duration("within_monthly", within_monthly)?,
            keep_within_yearly: duration("within_yearly", within_yearly)?,
            keep_tags: tags
                .iter()
                .map(|group| group.split(',').map(str::to_owned).collect())
                .collect(),
            ttl: duration("ttl", ttl)?,
        };
        policy
            .validate()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(PyKeepPolicy { inner: policy })
    }

    /// Whether the policy keeps nothing by any rule (forget then keeps only
    /// the newest backup of each set).
    #[getter]
    fn empty(&self) -> bool {
        self.inner.is_empty()
    }

    fn __repr__(&self) -> String {
        let policy = &self.inner;
        let mut parts = Vec::new();
        for (name, value) in [
            ("last", policy.keep_last),
            ("hourly", policy.keep_hourly),
            ("daily", policy.keep_daily),
            ("weekly", policy.keep_weekly),
            ("monthly", policy.keep_monthly),
            ("yearly", policy.keep_yearly),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        }
        for (name, value) in [
            ("within", &policy.keep_within),
            ("within_hourly", &policy.keep_within_hourly),
            ("within_daily", &policy.keep_within_daily),
            ("within_weekly", &policy.keep_within_weekly),
            ("within_monthly", &policy.keep_within_monthly),
            ("within_yearly", &policy.keep_within_yearly),
            ("ttl", &policy.ttl),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={:?}", value.to_string()));
            }
        }
        if !policy.keep_tags.is_empty() {
            let groups: Vec<String> = policy
                .keep_tags
                .iter()
                .map(|group| group.join(","))
                .collect();
            parts.push(format!("tags={groups:?}"));
        }
        format!("KeepPolicy({})", parts.join(", "))
    }
}
