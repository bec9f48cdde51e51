//! Time, injected so that queue tests can move it (lease expiry, backoff) without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn starting_at(ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(ms)))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The database's time, read through this process's clock: the offset between the two is measured when
/// the service starts and every [`DatabaseClock::RESYNC`], so that replicas whose own clocks differ
/// agree on when a lease ends, a lock runs out or a schedule falls due, and take `updateSequenceId`s
/// from one timeline. It never goes backwards, even when a new measurement lowers the offset.
pub struct DatabaseClock {
    base: Arc<dyn Clock>,
    offset_ms: AtomicI64,
    last_ms: AtomicI64,
}

impl DatabaseClock {
    /// How often the offset is measured again (clocks drift; NTP steps them).
    pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

    /// Measures the offset of `base` to `store`'s clock and keeps it measured while the clock lives.
    pub async fn start(
        store: &crate::Store,
        base: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, crate::StoreError> {
        let clock = Arc::new(Self {
            base,
            offset_ms: AtomicI64::new(0),
            last_ms: AtomicI64::new(i64::MIN),
        });
        clock.measure(store).await?;
        let weak = Arc::downgrade(&clock);
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Self::RESYNC).await;
                let Some(clock) = weak.upgrade() else { return };
                if let Err(e) = clock.measure(&store).await {
                    tracing::warn!(error = %e, "could not read the database's clock; keeping the last offset");
                }
            }
        });
        Ok(clock)
    }

    /// The offset is taken against the middle of the quickest of a few round trips (the first one may
    /// open a connection), so it is off by at most half of it. An offset within that error is no
    /// evidence that the clocks differ, and is taken as zero: a replica on the database's machine, or
    /// one whose NTP works, keeps its own clock to the millisecond.
    async fn measure(&self, store: &crate::Store) -> Result<(), crate::StoreError> {
        let mut best: Option<(i64, i64)> = None;
        for _ in 0..3 {
            let before = self.base.now_ms();
            let database = store.database_now_ms().await?;
            let after = self.base.now_ms();
            let round_trip = after - before;
            if best.is_none_or(|(rtt, _)| round_trip < rtt) {
                best = Some((round_trip, database - before - round_trip / 2));
            }
        }
        let (round_trip, offset) = best.expect("measured");
        let offset = if offset.abs() <= round_trip / 2 + 1 {
            0
        } else {
            offset
        };
        self.offset_ms.store(offset, Ordering::SeqCst);
        Ok(())
    }

    /// How far this process's clock is behind the database's (negative: ahead).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for DatabaseClock {
    fn now_ms(&self) -> i64 {
        let now = self.base.now_ms() + self.offset_ms.load(Ordering::SeqCst);
        let last = self.last_ms.fetch_max(now, Ordering::SeqCst);
        now.max(last)
    }
}

/// Another clock moved by a fixed amount: a replica whose clock is wrong, in tests.
pub struct SkewedClock {
    pub base: Arc<dyn Clock>,
    pub skew_ms: i64,
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        self.base.now_ms() + self.skew_ms
    }
}

impl crate::Store {
    /// The database server's clock, in milliseconds since the Unix epoch.
    pub async fn database_now_ms(&self) -> Result<i64, crate::StoreError> {
        let sql = match self.backend() {
            crate::Backend::Postgres => {
                "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)"
            }
            crate::Backend::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
            }
        };
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }
}
