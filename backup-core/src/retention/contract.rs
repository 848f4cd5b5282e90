//! The [`RetentionPolicy`] contract, checked for any implementation.

use chrono::{DateTime, Utc};

use super::RetentionPolicy;
use crate::format::manifest::Backup;

/// Checks the [`RetentionPolicy`] contract for one input: one decision per
/// backup, in order, with the backup's id and at least one reason; the same
/// decisions when called twice (purity); and the newest completed backup of
/// every set kept (the first of them in input order when several share the
/// newest time).
///
/// Every implementation can run it over its own test inputs; it is compiled
/// in tests and with the `conformance` feature.
///
/// # Panics
///
/// On the first violation, with a message naming it.
pub fn check_policy_contract(policy: &dyn RetentionPolicy, backups: &[Backup], now: DateTime<Utc>) {
    let first = policy.decide(backups, now);
    assert_eq!(
        first.len(),
        backups.len(),
        "retention contract: {} decisions for {} backups",
        first.len(),
        backups.len()
    );
    for (position, (decision, backup)) in first.iter().zip(backups).enumerate() {
        assert_eq!(
            decision.id, backup.id,
            "retention contract: decision {position} is for {} but backup {position} is {}",
            decision.id, backup.id
        );
        assert!(
            !decision.reasons.is_empty(),
            "retention contract: decision {position} ({}) has no reason",
            decision.id
        );
    }
    let second = policy.decide(backups, now);
    assert_eq!(
        first, second,
        "retention contract: two calls with the same input decided differently"
    );
    for (set, position) in super::floors(backups) {
        let backup = &backups[position];
        assert!(
            first.get(position).is_some_and(|decision| decision.keep),
            "retention contract: the newest completed backup of set {set:?} ({}, {}) is forgotten",
            backup.id,
            backup.manifest.time
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::BackupStatus;
    use crate::retention::fixtures::{at, backup};
    use crate::retention::{Decision, KeepPolicy};

    /// Forgets everything: breaks the floor.
    struct ForgetAll;
    impl RetentionPolicy for ForgetAll {
        fn decide(&self, backups: &[Backup], _: DateTime<Utc>) -> Vec<Decision> {
            backups
                .iter()
                .map(|b| Decision {
                    id: b.id,
                    keep: false,
                    reasons: vec!["no".into()],
                })
                .collect()
        }
    }

    /// Decides in reverse order.
    struct Reversed;
    impl RetentionPolicy for Reversed {
        fn decide(&self, backups: &[Backup], now: DateTime<Utc>) -> Vec<Decision> {
            let mut decisions = KeepPolicy::default().decide(backups, now);
            decisions.reverse();
            decisions
        }
    }

    /// Reads a counter: not pure.
    struct Impure(std::sync::atomic::AtomicBool);
    impl RetentionPolicy for Impure {
        fn decide(&self, backups: &[Backup], now: DateTime<Utc>) -> Vec<Decision> {
            let flip = !self.0.fetch_xor(true, std::sync::atomic::Ordering::SeqCst);
            let mut decisions = KeepPolicy::default().decide(backups, now);
            if let Some(last) = decisions.last_mut() {
                last.reasons.push(format!("call {flip}"));
            }
            decisions
        }
    }

    fn two_backups() -> Vec<Backup> {
        vec![
            backup(1, "s", at("2021-01-01T00:00:00Z"), BackupStatus::Completed),
            backup(2, "s", at("2021-01-02T00:00:00Z"), BackupStatus::Completed),
        ]
    }

    #[test]
    #[should_panic(expected = "newest completed backup")]
    fn contract_check_catches_a_forgotten_floor() {
        check_policy_contract(&ForgetAll, &two_backups(), at("2022-01-01T00:00:00Z"));
    }

    #[test]
    #[should_panic(expected = "decision 0 is for")]
    fn contract_check_catches_the_wrong_order() {
        check_policy_contract(&Reversed, &two_backups(), at("2022-01-01T00:00:00Z"));
    }

    #[test]
    #[should_panic(expected = "decided differently")]
    fn contract_check_catches_impurity() {
        check_policy_contract(
            &Impure(Default::default()),
            &two_backups(),
            at("2022-01-01T00:00:00Z"),
        );
    }
}
