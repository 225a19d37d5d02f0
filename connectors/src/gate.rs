//! A region's gate: every store in a configured region is reached through it.
//!
//! It keeps the region's reachability as its requests see it (consecutive failures, the last
//! error), refuses every request at once while an operator has cut the instance off from the
//! region (failover drills), and aborts the requests in flight when the region is given up
//! (failover), so a load or refresh waiting out the retry budget against a dead store ends at once
//! and can be run again from a replica. What to do about a failing region is decided by the
//! service; this only counts, cuts and aborts.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tokio::sync::watch;

/// One region's reachability and its cut/abort switches.
#[derive(Debug)]
pub struct RegionGate {
    name: String,
    cut: AtomicBool,
    /// Bumped to abort every request in flight.
    abort: watch::Sender<u64>,
    consecutive_failures: AtomicU32,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RegionGate {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cut: AtomicBool::new(false),
            abort: watch::Sender::new(0),
            consecutive_failures: AtomicU32::new(0),
            requests_ok: AtomicU64::new(0),
            requests_failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cuts the instance off from the region (`true`) or reconnects it. Cutting also aborts
    /// the requests in flight.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.abort_in_flight();
        }
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Ends every request to the region now in flight with an error.
    pub fn abort_in_flight(&self) {
        self.abort.send_modify(|g| *g += 1);
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::SeqCst)
    }

    pub fn requests_ok(&self) -> u64 {
        self.requests_ok.load(Ordering::Relaxed)
    }

    pub fn requests_failed(&self) -> u64 {
        self.requests_failed.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the outcome of one request (or probe). An answer that shows the store is
    /// there (found, not found, refused a precondition) counts as reached.
    pub fn record<T>(&self, result: &object_store::Result<T>) {
        match result {
            Ok(_)
            | Err(object_store::Error::NotFound { .. })
            | Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotModified { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => self.reached(),
            Err(e) => self.failed(&e.to_string()),
        }
    }

    pub fn reached(&self) {
        self.requests_ok.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::SeqCst);
    }

    pub fn failed(&self, error: &str) {
        self.requests_failed.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::SeqCst);
        let mut e = error.to_string();
        let cut = e.find(['<', '{']).unwrap_or(e.len());
        e.truncate(cut.min(300));
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }

    fn refused(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: "region",
            source: format!("region '{}' is cut off from this instance", self.name).into(),
        }
    }

    fn aborted(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: "region",
            source: format!(
                "region '{}' was given up (failover) while the request ran",
                self.name
            )
            .into(),
        }
    }

    /// Runs one request: refused while cut, aborted on failover, and counted.
    async fn run<T>(
        &self,
        request: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        if self.is_cut() {
            let e = self.refused();
            self.failed(&e.to_string());
            return Err(e);
        }
        let mut abort = self.abort.subscribe();
        abort.mark_unchanged();
        let result = tokio::select! {
            r = request => r,
            _ = abort.changed() => Err(if self.is_cut() { self.refused() } else { self.aborted() }),
        };
        self.record(&result);
        result
    }

    /// Makes `stream` end with an error when the region is cut or given up mid-way.
    fn guard_stream<T: Send + 'static>(
        self: &Arc<Self>,
        stream: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        let gate = self.clone();
        let mut abort = self.abort.subscribe();
        abort.mark_unchanged();
        if self.is_cut() {
            let e = self.refused();
            self.failed(&e.to_string());
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        futures::stream::unfold(
            (stream, abort, gate, false),
            |(mut s, mut abort, gate, done)| async move {
                if done {
                    return None;
                }
                tokio::select! {
                    item = s.next() => {
                        let item = item?;
                        if let Err(e) = &item {
                            gate.failed(&e.to_string());
                        }
                        Some((item, (s, abort, gate, false)))
                    }
                    _ = abort.changed() => {
                        let e = if gate.is_cut() { gate.refused() } else { gate.aborted() };
                        Some((Err(e), (s, abort, gate, true)))
                    }
                }
            },
        )
        // Some readers poll again after the end.
        .fuse()
        .boxed()
    }
}

/// A store reached through its region's gate.
#[derive(Debug)]
pub struct GatedStore {
    inner: Arc<dyn ObjectStore>,
    gate: Arc<RegionGate>,
}

impl GatedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, gate: Arc<RegionGate>) -> Self {
        Self { inner, gate }
    }
}

impl fmt::Display for GatedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (region {})", self.inner, self.gate.name)
    }
}

#[async_trait]
impl ObjectStore for GatedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.gate
            .run(self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.gate
            .run(self.inner.put_multipart_opts(location, opts))
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut got = self
            .gate
            .run(self.inner.get_opts(location, options))
            .await?;
        if let GetResultPayload::Stream(s) = got.payload {
            got.payload = GetResultPayload::Stream(self.gate.guard_stream(s));
        }
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.gate.run(self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.gate.guard_stream(self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.gate.guard_stream(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.gate
            .guard_stream(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.gate.run(self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.gate.run(self.inner.copy_opts(from, to, options)).await
    }
}

/// Asks whether the store is there: one HEAD of a key that need not exist, with no retries.
pub async fn probe(store: &dyn ObjectStore, key: &str) -> object_store::Result<()> {
    use object_store::ObjectStoreExt;
    match store.head(&Path::from(key)).await {
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn cut_regions_refuse_requests_and_count_failures() {
        let gate = Arc::new(RegionGate::new("r1"));
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        inner
            .put(&Path::from("a"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let store = GatedStore::new(inner, gate.clone());
        assert_eq!(
            store
                .get(&Path::from("a"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            "x"
        );
        assert!(store.head(&Path::from("missing")).await.is_err());
        assert_eq!(gate.consecutive_failures(), 0, "not found means reached");
        gate.set_cut(true);
        let e = store.get(&Path::from("a")).await.unwrap_err().to_string();
        assert!(e.contains("region 'r1' is cut off"), "{e}");
        let listed: Vec<_> = store.list(None).collect().await;
        assert!(listed[0].is_err());
        assert_eq!(gate.consecutive_failures(), 2);
        gate.set_cut(false);
        probe(&store, "nothing-here").await.unwrap();
        assert_eq!(gate.consecutive_failures(), 0);
    }

    #[tokio::test]
    async fn aborting_ends_requests_in_flight() {
        #[derive(Debug)]
        struct Hangs;
        impl fmt::Display for Hangs {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("hangs")
            }
        }
        #[async_trait]
        impl ObjectStore for Hangs {
            async fn put_opts(
                &self,
                _: &Path,
                _: PutPayload,
                _: PutOptions,
            ) -> object_store::Result<PutResult> {
                futures::future::pending().await
            }
            async fn put_multipart_opts(
                &self,
                _: &Path,
                _: PutMultipartOptions,
            ) -> object_store::Result<Box<dyn MultipartUpload>> {
                futures::future::pending().await
            }
            async fn get_opts(&self, _: &Path, _: GetOptions) -> object_store::Result<GetResult> {
                futures::future::pending().await
            }
            fn delete_stream(
                &self,
                _: BoxStream<'static, object_store::Result<Path>>,
            ) -> BoxStream<'static, object_store::Result<Path>> {
                futures::stream::pending().boxed()
            }
            fn list(
                &self,
                _: Option<&Path>,
            ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
                futures::stream::pending().boxed()
            }
            async fn list_with_delimiter(
                &self,
                _: Option<&Path>,
            ) -> object_store::Result<ListResult> {
                futures::future::pending().await
            }
            async fn copy_opts(
                &self,
                _: &Path,
                _: &Path,
                _: CopyOptions,
            ) -> object_store::Result<()> {
                futures::future::pending().await
            }
        }
        let gate = Arc::new(RegionGate::new("r2"));
        let store = Arc::new(GatedStore::new(Arc::new(Hangs), gate.clone()));
        let s = store.clone();
        let get = tokio::spawn(async move { s.get(&Path::from("a")).await.map(|_| ()) });
        let s = store.clone();
        let list = tokio::spawn(async move { s.list(None).try_collect::<Vec<_>>().await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.abort_in_flight();
        let e = get.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("given up (failover)"), "{e}");
        assert!(list.await.unwrap().is_err());
    }
}
