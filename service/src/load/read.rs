//! Reading the files a load or refresh needs, in parallel, into segments; each file's bytes are
//! counted against the memory limit as it arrives, so a load that does not fit stops early.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use object_store::ObjectStore;
use tarn_catalog::TableKey;
use tarn_connectors::ConnectorError;
use tarn_connectors::listing::FileEntry;
use tarn_connectors::read::{self, DeltaSnapshot, ReadOptions};
use tarn_engine::store::{Reservation, Segment};

use super::source::Listed;
use crate::error::{Result, ServiceError};
use crate::regions::Route;

/// A read error, as the table sees it: a copy in another region that lacks an object its
/// listing or log names is behind.
pub fn read_error(key: &TableKey, e: ConnectorError, route: &Route) -> ServiceError {
    if route.replicated && e.is_not_found() {
        ServiceError::ReplicaBehind {
            table: key.clone(),
            region: route.region.clone().unwrap_or_default(),
            detail: e.to_string(),
        }
    } else {
        e.into()
    }
}

/// Reads the files `to_read` (indices into `listed`), a few at a time per core; answers each
/// index with its segment, in the order they were asked for.
pub async fn read_listed(
    key: &TableKey,
    listed: &[Listed],
    to_read: &[usize],
    opts: &ReadOptions,
    route: &Route,
    reservation: &Arc<Reservation>,
) -> Result<Vec<(usize, Segment)>> {
    let opts = &opts.clone().with_memory(reservation.clone());
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        * 2;
    let reads: Vec<futures::future::BoxFuture<'static, _>> = to_read
        .iter()
        .map(|&i| {
            let (store, f) = listed[i].clone();
            read_one(store, f, opts.clone())
                .map(move |r| (i, r))
                .boxed()
        })
        .collect();
    let mut reads = futures::stream::iter(reads).buffered(parallel);
    let mut out = Vec::with_capacity(to_read.len());
    while let Some((i, (f, read))) = reads.next().await {
        let read = read.map_err(|e| read_error(key, e, route))?;
        out.push((i, segment(f.uri.clone(), read, reservation)?));
    }
    Ok(out)
}

/// Reads the data files `to_read` (indices into the snapshot's manifest) of a Delta table.
pub async fn read_delta(
    key: &TableKey,
    snap: &DeltaSnapshot,
    to_read: &[usize],
    opts: &ReadOptions,
    route: &Route,
    reservation: &Arc<Reservation>,
) -> Result<Vec<(usize, Segment)>> {
    let opts = &opts.clone().with_memory(reservation.clone());
    let reads = read::read_delta_files(snap, to_read, opts)
        .await
        .map_err(|e| read_error(key, e, route))?;
    let mut out = Vec::with_capacity(to_read.len());
    for (&i, read) in to_read.iter().zip(reads) {
        out.push((
            i,
            segment(snap.manifest.files[i].uri.clone(), read, reservation)?,
        ));
    }
    Ok(out)
}

/// The segment of a file read, its loaded size held in the reservation: what the read took beyond
/// it (the file's bytes, builders' headroom) is given back.
fn segment(uri: String, read: read::FileBatches, reservation: &Reservation) -> Result<Segment> {
    let seg = Segment::new(uri, read.batches, read.rejected);
    match read.memory {
        Some(m) => m.keep(seg.bytes)?,
        None => reservation.grow(seg.bytes)?,
    }
    Ok(seg)
}

async fn read_one(
    store: Arc<dyn ObjectStore>,
    file: FileEntry,
    opts: ReadOptions,
) -> (FileEntry, tarn_connectors::Result<read::FileBatches>) {
    let out = read::read_file(store, &file, &opts).await;
    (file, out)
}
