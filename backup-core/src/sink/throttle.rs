//! Limiting the bytes per second written to and read from a sink (restic's
//! `--limit-upload` and `--limit-download`).
//!
//! Each direction has a token bucket, kept as the generic cell rate
//! algorithm does it: one "theoretical arrival time" per bucket, moved on by
//! `bytes / rate` for every reservation, so that a caller knows at once how
//! long to wait and concurrent callers are served in the order they asked.
//! The bucket holds at most a quarter of a second of the rate, so that
//! bytes moved at full speed after an idle moment do not spoil the average
//! of a short transfer.
//!
//! Bytes are paid for in slices of at most [`SLICE_MAX`]: a staged object
//! (how a local sink receives a pack as the backup fills it) is written a
//! slice at a time, each after its wait, so a large upload moves steadily
//! instead of in one burst followed by a long pause.

use std::num::NonZeroU64;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, PutMode, Sink, StagedObject};
use crate::Result;

/// The largest slice paid for (and, for staged objects, written) at once.
const SLICE_MAX: u64 = 64 * 1024;
/// The smallest slice, so that a very low rate does not cost a lock and a
/// sleep per few bytes.
const SLICE_MIN: u64 = 4 * 1024;
/// The most a bucket holds, as a share of one second of its rate.
const BURST_DIVISOR: u64 = 4;

/// The bandwidth limits of a [`ThrottleSink`]: bytes per second in each
/// direction, `None` for no limit.
///
/// # Examples
///
/// ```
/// use backup_core::ThrottleLimits;
/// // restic's --limit-upload 2048 (KiB/s); 0 means no limit, as there.
/// let limits = ThrottleLimits::default()
///     .with_upload(2048 * 1024)
///     .with_download(0);
/// assert_eq!(limits.upload.map(|rate| rate.get()), Some(2 * 1024 * 1024));
/// assert_eq!(limits.download, None);
/// assert!(!limits.is_unlimited());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleLimits {
    /// Bytes per second written: the data of puts and of staged objects.
    pub upload: Option<NonZeroU64>,
    /// Bytes per second read: the data `get_range` returns.
    pub download: Option<NonZeroU64>,
}

impl ThrottleLimits {
    /// Sets [`upload`](Self::upload) to `bytes_per_second`; 0 removes the
    /// limit.
    #[must_use]
    pub fn with_upload(mut self, bytes_per_second: u64) -> Self {
        self.upload = NonZeroU64::new(bytes_per_second);
        self
    }

    /// Sets [`download`](Self::download) to `bytes_per_second`; 0 removes
    /// the limit.
    #[must_use]
    pub fn with_download(mut self, bytes_per_second: u64) -> Self {
        self.download = NonZeroU64::new(bytes_per_second);
        self
    }

    /// Whether neither direction is limited.
    pub fn is_unlimited(&self) -> bool {
        self.upload.is_none() && self.download.is_none()
    }
}

/// Wraps a sink and limits the bytes per second of its object data: the
/// bytes of `put` and of staged objects ([`Sink::stage`]) against the
/// upload limit, the bytes `get_range` returns against the download limit.
/// Requests without a body (`head`, `list`, `delete`) are not limited. The
/// limit is shared by every clone and by every concurrent request.
///
/// How each kind of transfer is paced:
///
/// * A staged object is written in slices of at most 64 KiB, each once its
///   bytes are paid for: a pack streaming to a local disk moves at the rate.
/// * A sink that takes objects whole (the object store and SFTP sinks) gets
///   each object once its bytes are paid for, slice by slice; the object
///   itself then moves at the network's speed, and the average over a
///   command is the rate.
/// * A ranged read is paid for before it is sent (the difference settled
///   when the answer is shorter), a whole-object read once its length is
///   known.
///
/// The waits need a tokio runtime with its time driver (for async calls)
/// or a thread that may block (for staged objects, whose methods block
/// anyway).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use backup_core::{MemorySink, PutMode, Sink, SinkExt, ThrottleLimits, ThrottleSink};
///
/// let limits = ThrottleLimits::default().with_upload(4 * 1024 * 1024);
/// let sink = ThrottleSink::new(Arc::new(MemorySink::new()), limits);
/// // Well within the first quarter second's worth: no wait.
/// let started = std::time::Instant::now();
/// sink.put("config", "hello".into(), PutMode::Create).await?;
/// assert_eq!(sink.get("config").await?, "hello");
/// assert!(started.elapsed() < std::time::Duration::from_millis(200));
/// assert_eq!(sink.limits(), limits);
/// # Ok::<(), backup_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleSink {
    inner: Arc<dyn Sink>,
    limits: ThrottleLimits,
    upload: Option<Arc<TokenBucket>>,
    download: Option<Arc<TokenBucket>>,
}

impl ThrottleSink {
    /// Limits `inner`'s transfers to `limits`.
    pub fn new(inner: Arc<dyn Sink>, limits: ThrottleLimits) -> Self {
        let bucket = |rate: Option<NonZeroU64>| rate.map(|rate| Arc::new(TokenBucket::new(rate)));
        ThrottleSink {
            inner,
            limits,
            upload: bucket(limits.upload),
            download: bucket(limits.download),
        }
    }

    /// `inner` limited to `limits`, or `inner` itself when they limit
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use backup_core::{MemorySink, Sink, ThrottleLimits, ThrottleSink};
    /// let inner: Arc<dyn Sink> = Arc::new(MemorySink::new());
    /// let same = ThrottleSink::wrap(inner.clone(), ThrottleLimits::default());
    /// assert!(Arc::ptr_eq(&same, &inner));
    /// ```
    pub fn wrap(inner: Arc<dyn Sink>, limits: ThrottleLimits) -> Arc<dyn Sink> {
        if limits.is_unlimited() {
            inner
        } else {
            Arc::new(ThrottleSink::new(inner, limits))
        }
    }

    /// The limits.
    pub fn limits(&self) -> ThrottleLimits {
        self.limits
    }
}

#[async_trait]
impl Sink for ThrottleSink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        if let Some(upload) = &self.upload {
            upload.take(data.len() as u64).await;
        }
        self.inner.put(key, data, mode).await
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let Some(download) = &self.download else {
            return self.inner.get_range(key, range).await;
        };
        // Pay for a bounded range before asking (a range past the end is
        // cut to the end: settle with what came); for an open-ended one or
        // a whole object, once it came.
        let asked = range
            .as_ref()
            .map(|range| range.end.saturating_sub(range.start))
            .filter(|&length| length <= PREPAID_MAX)
            .unwrap_or(0);
        download.take(asked).await;
        match self.inner.get_range(key, range).await {
            Ok(bytes) => {
                let got = bytes.len() as u64;
                if got > asked {
                    download.take(got - asked).await;
                } else {
                    download.refund(asked - got);
                }
                Ok(bytes)
            }
            Err(error) => {
                download.refund(asked);
                Err(error)
            }
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn prefetch(&self, prefix: &str) {
        self.inner.prefetch(prefix).await;
    }

    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }

    /// The inner sink's staged object, its appends paced slice by slice.
    fn stage(&self) -> Result<Option<Box<dyn StagedObject>>> {
        let staged = self.inner.stage()?;
        Ok(match (staged, &self.upload) {
            (Some(inner), Some(upload)) => Some(Box::new(ThrottledStaged {
                inner,
                upload: upload.clone(),
            })),
            (staged, _) => staged,
        })
    }
}

/// The longest range paid for before it is read: a longer one is taken
/// for open-ended (reaching far past the object's end), and paid for once
/// its bytes came, so that the bucket never stalls for bytes that never
/// come.
const PREPAID_MAX: u64 = 64 * 1024 * 1024;

/// A staged object whose appends wait for the upload bucket.
#[derive(Debug)]
struct ThrottledStaged {
    inner: Box<dyn StagedObject>,
    upload: Arc<TokenBucket>,
}

impl StagedObject for ThrottledStaged {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let slice = usize::try_from(self.upload.slice).unwrap_or(usize::MAX);
        for piece in data.chunks(slice.max(1)) {
            let wait = self.upload.reserve(piece.len() as u64, Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            self.inner.append(piece)?;
        }
        Ok(())
    }

    fn commit(self: Box<Self>, key: &str) -> Result<()> {
        self.inner.commit(key)
    }
}

/// A token bucket of `rate` bytes per second holding at most `burst`
/// bytes, kept as a theoretical arrival time (GCRA): the moment by which
/// every byte reserved so far has been paid for at the rate.
#[derive(Debug)]
struct TokenBucket {
    rate: NonZeroU64,
    /// How long the bucket takes to fill: the time worth of its burst.
    tolerance: Duration,
    /// Bytes paid for, and moved, in one step.
    slice: u64,
    /// The theoretical arrival time.
    paid_until: Mutex<Instant>,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second.
    fn new(rate: NonZeroU64) -> TokenBucket {
        let burst = (rate.get() / BURST_DIVISOR).max(1);
        TokenBucket {
            rate,
            tolerance: cost(burst, rate),
            slice: burst.clamp(SLICE_MIN, SLICE_MAX),
            paid_until: Mutex::new(Instant::now()),
        }
    }

    /// Reserves `bytes` at `now` and returns how long the caller waits
    /// before moving them: nothing while the bucket holds them, otherwise
    /// until enough has flowed back in.
    fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let mut paid_until = self
            .paid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // An idle bucket fills up to its burst, no further.
        let start = (*paid_until).max(now);
        let end = start.checked_add(cost(bytes, self.rate)).unwrap_or(start);
        *paid_until = end;
        end.saturating_duration_since(now)
            .saturating_sub(self.tolerance)
    }

    /// Gives back `bytes` reserved but not moved (a read shorter than
    /// asked, or one that failed).
    fn refund(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut paid_until = self
            .paid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(earlier) = paid_until.checked_sub(cost(bytes, self.rate)) {
            *paid_until = earlier;
        }
    }

    /// Pays for `bytes`, slice by slice, waiting as needed.
    async fn take(&self, bytes: u64) {
        let mut left = bytes;
        while left > 0 {
            let piece = left.min(self.slice);
            left -= piece;
            let wait = self.reserve(piece, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The time `bytes` take at `rate` bytes per second.
fn cost(bytes: u64, rate: NonZeroU64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate.get());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{LocalSink, MemorySink, SinkExt};

    fn rate(bytes_per_second: u64) -> NonZeroU64 {
        NonZeroU64::new(bytes_per_second).unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_bucket_lets_a_quarter_second_through_then_paces_at_the_rate() {
        let bucket = TokenBucket::new(rate(1000));
        let start = *bucket.paid_until.lock().unwrap();
        assert_eq!(bucket.tolerance, 250 * MS);
        // The first quarter second's worth at once, in any pieces.
        assert_eq!(bucket.reserve(100, start), Duration::ZERO);
        assert_eq!(bucket.reserve(150, start), Duration::ZERO);
        // Then each byte is a millisecond later than the one before.
        assert_eq!(bucket.reserve(1, start), MS);
        assert_eq!(bucket.reserve(499, start), 500 * MS);
        // 10,000 more bytes asked for at once end 10 s later.
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            last = bucket.reserve(100, start);
        }
        assert_eq!(last, 10_500 * MS);
        // Waiting callers are served in order: one asking 5 s later waits
        // 5 s less.
        assert_eq!(bucket.reserve(0, start + 5000 * MS), 5_500 * MS);
    }

    #[test]
    fn an_idle_bucket_fills_to_its_burst_and_no_further() {
        let bucket = TokenBucket::new(rate(1000));
        let start = *bucket.paid_until.lock().unwrap();
        bucket.reserve(1000, start);
        // An hour later: a quarter second free, not an hour's worth.
        let later = start + Duration::from_secs(3600);
        assert_eq!(bucket.reserve(250, later), Duration::ZERO);
        assert_eq!(bucket.reserve(10, later), 10 * MS);
        // The average over a long transfer is the rate: 60,000 bytes in
        // 60 s less the burst.
        let bucket = TokenBucket::new(rate(1000));
        let start = *bucket.paid_until.lock().unwrap();
        let mut now = start;
        let mut moved = 0;
        while moved < 60_000 {
            now += bucket.reserve(100, now);
            moved += 100;
        }
        let seconds = (now - start).as_secs_f64();
        assert!((seconds - 59.75).abs() < 0.01, "{seconds}");
    }

    #[test]
    fn refunds_give_back_what_was_not_moved() {
        let bucket = TokenBucket::new(rate(1000));
        let start = *bucket.paid_until.lock().unwrap();
        assert_eq!(bucket.reserve(1250, start), 1000 * MS);
        bucket.refund(1000);
        assert_eq!(bucket.reserve(0, start), Duration::ZERO);
        assert_eq!(bucket.reserve(1, start), MS);
    }

    #[test]
    fn slices_and_burst_follow_the_rate() {
        // 2 MiB/s: half a MiB of burst, slices of the largest size.
        let fast = TokenBucket::new(rate(2 << 20));
        assert_eq!(fast.tolerance, 250 * MS);
        assert_eq!(fast.slice, SLICE_MAX);
        // 1 KiB/s, restic's smallest limit: slices of the smallest size.
        let slow = TokenBucket::new(rate(1024));
        assert_eq!(slow.slice, SLICE_MIN);
        assert_eq!(cost(1024, rate(1024)), Duration::from_secs(1));
        assert_eq!(cost(u64::MAX, rate(1)), Duration::from_nanos(u64::MAX));
    }

    #[tokio::test]
    async fn puts_and_gets_take_as_long_as_the_rate_says() {
        let limits = ThrottleLimits::default()
            .with_upload(1 << 20)
            .with_download(2 << 20);
        let sink = ThrottleSink::new(Arc::new(MemorySink::new()), limits);
        let data = Bytes::from(vec![7u8; 1 << 20]);
        let started = Instant::now();
        sink.put("a", data.clone(), PutMode::Create).await.unwrap();
        sink.put("b", data.clone(), PutMode::Create).await.unwrap();
        // 2 MiB at 1 MiB/s, less the quarter second of burst.
        let put = started.elapsed();
        assert!(put >= 1740 * MS, "{put:?}");
        let started = Instant::now();
        for key in ["a", "b"] {
            assert_eq!(sink.get(key).await.unwrap(), data);
        }
        // A range past the end pays for what came, not what was asked.
        let tail = sink.get_range("a", Some(0..u64::MAX)).await.unwrap();
        assert_eq!(tail.len(), 1 << 20);
        // 3 MiB at 2 MiB/s, less the burst.
        let got = started.elapsed();
        assert!(got >= 1240 * MS && got < 2900 * MS, "{got:?}");
        // What has no body waits for nothing.
        let started = Instant::now();
        assert_eq!(sink.head("a").await.unwrap().size, 1 << 20);
        assert_eq!(sink.list_keys("").await.unwrap(), ["a", "b"]);
        assert!(started.elapsed() < 100 * MS);
    }

    /// A staged object that records when each piece arrived.
    #[derive(Debug)]
    struct Recorder(Arc<Mutex<Vec<(Instant, usize)>>>);

    impl StagedObject for Recorder {
        fn append(&mut self, data: &[u8]) -> Result<()> {
            self.0.lock().unwrap().push((Instant::now(), data.len()));
            Ok(())
        }

        fn commit(self: Box<Self>, _key: &str) -> Result<()> {
            Ok(())
        }
    }

    /// A sink that stages into a [`Recorder`].
    #[derive(Debug, Default)]
    struct StagingSink(Arc<Mutex<Vec<(Instant, usize)>>>);

    #[async_trait]
    impl Sink for StagingSink {
        async fn put(&self, _key: &str, _data: Bytes, _mode: PutMode) -> Result<()> {
            Ok(())
        }
        async fn get_range(&self, key: &str, _range: Option<Range<u64>>) -> Result<Bytes> {
            Err(crate::Error::NotFound {
                key: key.to_owned(),
            })
        }
        async fn head(&self, key: &str) -> Result<ObjectMeta> {
            Err(crate::Error::NotFound {
                key: key.to_owned(),
            })
        }
        async fn list(&self, _prefix: &str) -> Result<Vec<ObjectMeta>> {
            Ok(Vec::new())
        }
        async fn delete(&self, _key: &str) -> Result<()> {
            Ok(())
        }
        fn location(&self) -> String {
            "recorder:".into()
        }
        fn stage(&self) -> Result<Option<Box<dyn StagedObject>>> {
            Ok(Some(Box::new(Recorder(self.0.clone()))))
        }
    }

    #[test]
    fn a_staged_object_is_written_steadily_not_at_once() {
        let inner = Arc::new(StagingSink::default());
        let sink = ThrottleSink::new(
            inner.clone(),
            ThrottleLimits::default().with_upload(1 << 20),
        );
        let mut staged = sink.stage().unwrap().unwrap();
        let started = Instant::now();
        // One append of 1.25 MiB, as a pack writer hands over its blocks.
        staged.append(&vec![1u8; 5 << 18]).unwrap();
        staged.commit("data/pack").unwrap();
        let pieces = inner.0.lock().unwrap().clone();
        assert_eq!(pieces.iter().map(|(_, len)| len).sum::<usize>(), 5 << 18);
        assert!(pieces.iter().all(|&(_, len)| len as u64 <= SLICE_MAX));
        // The first quarter MiB at once (4 slices of 64 KiB), then a slice
        // every 1/16 s: the 10th after 3/8 s, the 20th and last after 1 s.
        let at = |share: usize| pieces[pieces.len() * share / 4 - 1].0 - started;
        assert!(at(1) < 150 * MS, "{:?}", at(1));
        assert!(at(2) >= 350 * MS, "{:?}", at(2));
        assert!(at(4) >= 980 * MS, "{:?}", at(4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unlimited_wraps_nothing_and_limited_sinks_conform() {
        let memory: Arc<dyn Sink> = Arc::new(MemorySink::new());
        assert!(Arc::ptr_eq(
            &ThrottleSink::wrap(memory.clone(), ThrottleLimits::default()),
            &memory
        ));
        let tmp = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalSink::create(tmp.path().join("repo")).unwrap());
        // Fast enough for the suite's 21 MiB, slow enough to be in the way.
        let limits = ThrottleLimits::default()
            .with_upload(256 << 20)
            .with_download(256 << 20);
        for inner in [memory, local as Arc<dyn Sink>] {
            crate::sink::conformance::run_all(&ThrottleSink::new(inner, limits)).await;
        }
    }
}
