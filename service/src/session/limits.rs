//! The limits every query runs under (`[limits]`): a turn among at most `max_concurrent_queries`
//! (waiting up to `queue_timeout` for one), `query_timeout` from the turn to the last batch,
//! `max_result_bytes` of Arrow data in the answer, and `query_memory` for its operators (applied
//! by the engine's pool). A query that passes one is stopped with its own error; its turn is
//! given back when its answer ends or is dropped (a client that went away cancels it).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::Stream;
use tarn_engine::QueryStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::config::Limits;
use crate::error::{Result, ServiceError};

/// The limits, and the turns they hand out.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    turns: Arc<Semaphore>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(limits.max_concurrent_queries)),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A turn to run a query, waiting up to `queue_timeout` for one.
    pub async fn turn(&self) -> Result<Turn> {
        let permit = tokio::time::timeout(
            self.limits.queue_timeout,
            self.turns.clone().acquire_owned(),
        )
        .await
        .map_err(|_| ServiceError::TooManyQueries {
            max: self.limits.max_concurrent_queries,
            waited: self.limits.queue_timeout,
        })?
        .map_err(|_| ServiceError::Internal("the query turns are closed".into()))?;
        Ok(Turn {
            _permit: permit,
            deadline: Instant::now() + self.limits.query_timeout,
            timeout: self.limits.query_timeout,
            max_bytes: self.limits.max_result_bytes,
        })
    }
}

/// One query's turn: held until its answer ends.
#[derive(Debug)]
pub struct Turn {
    /// The turn itself: given back when dropped.
    _permit: OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
    max_bytes: Option<u64>,
}

impl Turn {
    /// Runs `work` (planning, refreshes on read) within the query's time.
    pub async fn within<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout_at(self.deadline, work)
            .await
            .map_err(|_| ServiceError::QueryTimeout {
                limit: self.timeout,
            })?
    }

    /// `answer`, stopped when the time is up or the bytes are too many; the turn goes with it.
    pub fn limit(self, answer: QueryStream) -> QueryStream {
        let (schema, ordered) = (answer.schema.clone(), answer.ordered);
        let limited = Limited {
            inner: answer.stream,
            sleep: Box::pin(tokio::time::sleep_until(self.deadline)),
            bytes: 0,
            done: false,
            turn: Some(self),
        };
        QueryStream {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), limited)),
            schema,
            ordered,
        }
    }
}

struct Limited {
    inner: datafusion::physical_plan::SendableRecordBatchStream,
    sleep: Pin<Box<Sleep>>,
    bytes: u64,
    done: bool,
    /// Given back (dropped) when the answer ends.
    turn: Option<Turn>,
}

impl Limited {
    fn stop(&mut self, e: ServiceError) -> Poll<Option<datafusion::error::Result<RecordBatch>>> {
        self.done = true;
        self.turn = None;
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(e)))))
    }
}

impl Stream for Limited {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let limit = self.turn.as_ref().map_or(Duration::ZERO, |t| t.timeout);
            return self.stop(ServiceError::QueryTimeout { limit });
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.bytes += batch.get_array_memory_size() as u64;
                if let Some(max) = self.turn.as_ref().and_then(|t| t.max_bytes)
                    && self.bytes > max
                {
                    return self.stop(ServiceError::ResultTooLarge { limit: max });
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) => {
                self.done = true;
                self.turn = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::StreamExt;

    use super::*;

    fn limits(max: usize, timeout_ms: u64, bytes: Option<u64>) -> Limits {
        Limits {
            query_timeout: Duration::from_millis(timeout_ms),
            max_concurrent_queries: max,
            queue_timeout: Duration::from_millis(50),
            max_result_bytes: bytes,
            ..Default::default()
        }
    }

    fn answer(batches: usize, slow: Duration) -> QueryStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let s2 = schema.clone();
        let stream = futures::stream::iter(0..batches).then(move |i| {
            let schema = s2.clone();
            async move {
                tokio::time::sleep(slow).await;
                Ok(RecordBatch::try_new(
                    schema,
                    vec![Arc::new(Int64Array::from_iter_values(0..1000 + i as i64))],
                )
                .unwrap())
            }
        });
        QueryStream {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema.clone(), stream)),
            schema,
            ordered: false,
        }
    }

    async fn drain(q: QueryStream) -> (usize, Option<ServiceError>) {
        let mut s = q.stream;
        let mut n = 0;
        while let Some(b) = s.next().await {
            match b {
                Ok(_) => n += 1,
                Err(e) => return (n, Some(ServiceError::from(e))),
            }
        }
        (n, None)
    }

    #[tokio::test]
    async fn turns_time_and_bytes_are_limited_and_turns_come_back() {
        let limiter = Limiter::new(limits(1, 200, Some(20_000)));
        let first = limiter.turn().await.unwrap();
        // The only turn is taken: the next query waits, then is told.
        let e = limiter.turn().await.unwrap_err();
        assert_eq!(e.code().as_str(), "too_many_queries");
        // An answer that ends gives the turn back.
        let (n, e) = drain(first.limit(answer(2, Duration::ZERO))).await;
        assert_eq!((n, e.is_none()), (2, true));
        // Bytes: the third batch of 8 KB passes 20,000.
        let t = limiter.turn().await.unwrap();
        let (n, e) = drain(t.limit(answer(10, Duration::ZERO))).await;
        assert_eq!(n, 2);
        assert_eq!(e.unwrap().code().as_str(), "result_too_large");
        // Time: batches every 100 ms against 200 ms.
        let t = limiter.turn().await.unwrap();
        let (n, e) = drain(t.limit(answer(10, Duration::from_millis(100)))).await;
        assert!((1..=2).contains(&n), "{n}");
        assert_eq!(e.unwrap().code().as_str(), "query_timeout");
        // Work before the answer counts too; a dropped answer gives its turn back.
        let t = limiter.turn().await.unwrap();
        let e = t
            .within(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(e.code().as_str(), "query_timeout");
        drop(t);
        let t = limiter.turn().await.unwrap();
        drop(t.limit(answer(10, Duration::ZERO)));
        assert!(limiter.turn().await.is_ok());
    }
}
