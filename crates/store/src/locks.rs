//! Work that one replica at a time must own, decided in the database so that every replica on it
//! agrees: named locks held for a while ([`HeldLock`]) and periodic schedules claimed once per interval.
//!
//! Times are the caller's clock, which in `serve` follows the database's (`DatabaseClock`), so that
//! replicas whose own clocks differ still agree on when a lock ran out or a schedule fell due.

use crate::{Store, StoreError};

/// A named lock this process holds until `until_ms` unless it renews it. Its holder is drawn at
/// random, so that two tasks of one process are as distinct as two replicas.
#[derive(Debug)]
pub struct HeldLock {
    name: String,
    holder: String,
}

impl HeldLock {
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn fresh_holder() -> Result<String, StoreError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| StoreError::Crypto(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Store {
    /// Takes the lock `name` for `hold_ms` when nobody holds it, or its holder let it run out.
    /// `None`: another holds it.
    pub async fn try_lock(
        &self,
        name: &str,
        now_ms: i64,
        hold_ms: i64,
    ) -> Result<Option<HeldLock>, StoreError> {
        let holder = fresh_holder()?;
        // One statement: on PostgreSQL a concurrent taker waits for the row and then sees it held.
        let taken = sqlx::query(
            "INSERT INTO locks (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE locks.until_ms <= $4",
        )
        .bind(name)
        .bind(&holder)
        .bind(now_ms.saturating_add(hold_ms))
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        Ok(taken.then(|| HeldLock {
            name: name.to_owned(),
            holder,
        }))
    }

    /// Holds the lock `hold_ms` longer. `false`: it ran out and another took it; whatever the lock
    /// guarded must stop.
    pub async fn renew_lock(
        &self,
        lock: &HeldLock,
        now_ms: i64,
        hold_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE locks SET until_ms = $1 WHERE name = $2 AND holder = $3")
                .bind(now_ms.saturating_add(hold_ms))
                .bind(&lock.name)
                .bind(&lock.holder)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Lets the lock go at once (if it is still this holder's).
    pub async fn unlock(&self, lock: HeldLock) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2")
            .bind(&lock.name)
            .bind(&lock.holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Creates the schedule `name`, first due at `first_run_ms`, unless it exists (then it keeps its
    /// next run: a restart neither repeats nor skips a run).
    pub async fn ensure_schedule(&self, name: &str, first_run_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO schedules (name, next_run_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(first_run_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims the schedule's run if it is due, moving its next run `interval_ms` on. Of replicas
    /// asking at once, exactly one gets `true`.
    pub async fn claim_schedule(
        &self,
        name: &str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE schedules SET next_run_ms = $1 WHERE name = $2 AND next_run_ms <= $3",
        )
        .bind(now_ms.saturating_add(interval_ms))
        .bind(name)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Makes the schedule due again at `at_ms` (a claimed run that could not be carried out).
    pub async fn reschedule(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE schedules SET next_run_ms = $1 WHERE name = $2")
            .bind(at_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
