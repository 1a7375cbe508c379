//! The rotation status of a secret version: a pure function of its age, the policy and now.

use crate::Rotation;

const DAY: i128 = 86_400;

pub(crate) fn rotation(
    created_at: jiff::Timestamp,
    max_age: Option<std::time::Duration>,
    now: jiff::Timestamp,
) -> Rotation {
    let Some(max_age) = max_age else {
        return Rotation::NoPolicy;
    };
    let max_age = i128::from(max_age.as_secs());
    let due = i128::from(created_at.as_second()) + max_age;
    let remaining = due - i128::from(now.as_second());
    let window = (max_age / 10).max(DAY);
    let days = |seconds: i128| i64::try_from(seconds).unwrap_or(i64::MAX);
    if remaining < 0 {
        // Days started since the due time: a minute late is "overdue by 1 day", never 0.
        Rotation::Overdue {
            by_days: days((-remaining + DAY - 1) / DAY),
        }
    } else if remaining <= window {
        // Whole days left: 0 means due within the day.
        Rotation::DueSoon {
            due_in_days: days(remaining / DAY),
        }
    } else {
        Rotation::Ok {
            due_in_days: days(remaining / DAY),
        }
    }
}
