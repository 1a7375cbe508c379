//! Retention with restic's `forget` semantics (`keep last/hourly/daily/weekly/monthly/yearly`),
//! decided by `rustic_core`'s own implementation of them: a pure function of the backups'
//! times and now.

use rustic_core::KeepOptions;
use rustic_core::repofile::SnapshotFile;

use crate::error::{BackupError, Result};

/// How many backups to keep per period (the manifest's `retain:`); `None` keeps none for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

fn count(n: Option<u32>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// For each of `times` (any order), whether `policy` keeps it. A policy keeping nothing is
/// refused, as restic refuses `forget` without a `--keep-*` option.
pub fn keep(policy: &Retention, times: &[jiff::Timestamp], now: &jiff::Zoned) -> Result<Vec<bool>> {
    let options = KeepOptions::default()
        .keep_last(count(policy.last))
        .keep_hourly(count(policy.hourly))
        .keep_daily(count(policy.daily))
        .keep_weekly(count(policy.weekly))
        .keep_monthly(count(policy.monthly))
        .keep_yearly(count(policy.yearly));
    let zone = now.time_zone().clone();
    let snapshots: Vec<SnapshotFile> = times
        .iter()
        .enumerate()
        .map(|(i, time)| {
            // The description carries the input position through rustic's sort.
            SnapshotFile {
                time: time.to_zoned(zone.clone()),
                description: Some(i.to_string()),
                ..SnapshotFile::default()
            }
        })
        .collect();
    let decided = options
        .apply(snapshots, now)
        .map_err(|e| BackupError::Retention(e.display_log()))?;
    let mut kept = vec![false; times.len()];
    for forget in decided {
        if let Some(i) = forget
            .snapshot
            .description
            .and_then(|d| d.parse::<usize>().ok())
        {
            kept[i] = forget.keep;
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoned(text: &str) -> jiff::Zoned {
        text.parse().expect("a zoned time")
    }

    /// Times as restic's documentation lists them (UTC).
    fn times(list: &[&str]) -> Vec<jiff::Timestamp> {
        list.iter()
            .map(|t| zoned(&format!("{t}[UTC]")).timestamp())
            .collect()
    }

    fn kept(list: &[&str], policy: Retention, now: &str) -> Vec<String> {
        let t = times(list);
        let flags = keep(&policy, &t, &zoned(&format!("{now}[UTC]"))).unwrap();
        list.iter()
            .zip(flags)
            .filter(|(_, k)| *k)
            .map(|(t, _)| (*t).to_owned())
            .collect()
    }

    /// restic's documentation, "Removing snapshots according to a policy": one snapshot a day
    /// for 10 days, `--keep-daily 5` keeps the newest five days.
    #[test]
    fn keep_daily_keeps_the_newest_days() {
        let days: Vec<String> = (1..=10)
            .map(|d| format!("2026-01-{d:02}T10:00:00"))
            .collect();
        let days: Vec<&str> = days.iter().map(String::as_str).collect();
        let policy = Retention {
            daily: Some(5),
            ..Retention::default()
        };
        assert_eq!(
            kept(&days, policy, "2026-01-10T12:00:00"),
            days[5..]
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
        );
    }

    /// Several snapshots on one day count once for `daily`: the last of that day is kept.
    #[test]
    fn the_last_snapshot_of_a_day_stands_for_it() {
        let list = [
            "2026-03-01T01:00:00",
            "2026-03-01T23:00:00",
            "2026-03-02T01:00:00",
            "2026-03-02T12:00:00",
        ];
        let policy = Retention {
            daily: Some(2),
            ..Retention::default()
        };
        assert_eq!(
            kept(&list, policy, "2026-03-03T00:00:00"),
            ["2026-03-01T23:00:00", "2026-03-02T12:00:00"]
        );
    }

    /// restic's example `--keep-last 2 --keep-weekly 2`-style: policies add up (a snapshot
    /// kept for any reason is kept), weeks counted by ISO week.
    #[test]
    fn last_and_weekly_add_up() {
        let list = [
            "2026-01-05T10:00:00", // Monday, week 2
            "2026-01-12T10:00:00", // week 3
            "2026-01-19T10:00:00", // week 4
            "2026-01-20T10:00:00", // week 4
            "2026-01-21T10:00:00", // week 4
        ];
        let policy = Retention {
            last: Some(2),
            weekly: Some(2),
            ..Retention::default()
        };
        assert_eq!(
            kept(&list, policy, "2026-01-22T00:00:00"),
            [
                "2026-01-12T10:00:00",
                "2026-01-20T10:00:00",
                "2026-01-21T10:00:00"
            ]
        );
    }

    /// Monthly and yearly keep the last snapshot of each month / year.
    #[test]
    fn monthly_and_yearly() {
        let list = [
            "2024-12-31T10:00:00",
            "2025-06-15T10:00:00",
            "2025-12-01T10:00:00",
            "2026-01-10T10:00:00",
            "2026-02-10T10:00:00",
        ];
        let policy = Retention {
            monthly: Some(2),
            yearly: Some(3),
            ..Retention::default()
        };
        assert_eq!(
            kept(&list, policy, "2026-02-11T00:00:00"),
            [
                "2024-12-31T10:00:00",
                "2025-12-01T10:00:00",
                "2026-01-10T10:00:00",
                "2026-02-10T10:00:00"
            ]
        );
    }

    #[test]
    fn a_policy_keeping_nothing_is_refused() {
        let err = keep(
            &Retention::default(),
            &times(&["2026-01-01T00:00:00"]),
            &zoned("2026-01-02T00:00:00[UTC]"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
    }
}
