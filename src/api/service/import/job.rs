//! A running import: list page by page, copy up to
//! `IMPORT_OBJECTS_IN_FLIGHT_MAX` objects at once, count each outcome.
//!
//! The listing is read while copies run (they are tasks of their own); a page
//! is only asked for once every object of the one before has been handed out,
//! so at most one page of keys waits in memory. A key that cannot be a path
//! fails alone; the job goes on. If the listing itself fails past its retries,
//! the copies in flight finish and the job fails with that reason.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::copy::{self, Outcome};
use super::paths;
use super::source::{Listed, Page};
use super::{
    JobContext, IMPORT_OBJECTS_IN_FLIGHT_MAX, IMPORT_OBJECT_ATTEMPTS_MAX,
    IMPORT_RETRY_BACKOFF_MS_MAX, IMPORT_RETRY_BACKOFF_MS_MIN,
};

/// The job's task: runs until the listing ends and every copy is done (or the
/// job is cancelled, which aborts this task and, with the `JoinSet`, its copies).
pub(super) async fn run(ctx: Arc<JobContext>, first: Page) {
    let mut copies: JoinSet<()> = JoinSet::new();
    let listing = list_and_copy(&ctx, first, &mut copies).await;
    while let Some(joined) = copies.join_next().await {
        copy_task_ended(&ctx, joined);
    }
    let id = ctx.job.update(|s| s.id.clone());
    match &listing {
        Ok(()) => tracing::info!(%id, "import finished"),
        Err(why) => tracing::warn!(%id, error = %why, "import failed"),
    }
    ctx.job.finish(listing.err());
}

/// Walks the listing from `first`, handing each object to a copy task.
async fn list_and_copy(
    ctx: &Arc<JobContext>,
    first: Page,
    copies: &mut JoinSet<()>,
) -> Result<(), String> {
    let mut page = first;
    let mut pages_read: u64 = 1;
    // Ends when the source reports the last page; a source that hands back
    // the token it was given would loop, and is refused.
    loop {
        let listed_bytes: u64 = page.objects.iter().map(|o| o.size_bytes).sum();
        let listed_count = page.objects.len() as u64;
        ctx.job.update(|s| {
            s.objects_listed += listed_count;
            s.bytes_listed += listed_bytes;
        });
        for object in page.objects {
            while copies.len() >= IMPORT_OBJECTS_IN_FLIGHT_MAX {
                let joined = copies.join_next().await.expect("the set is not empty");
                copy_task_ended(ctx, joined);
            }
            let ctx = ctx.clone();
            copies.spawn(async move { copy_one(&ctx, &object).await });
        }
        let Some(token) = page.next else {
            ctx.job.update(|s| s.listing_done = true);
            return Ok(());
        };
        let next = ctx
            .source
            .list_page(Some(token.clone()))
            .await
            .map_err(|e| format!("listing page {} failed: {e}", pages_read + 1))?;
        if next.next.as_deref() == Some(token.as_str()) {
            return Err(format!(
                "the source repeated its continuation token at page {}",
                pages_read + 1
            ));
        }
        page = next;
        pages_read += 1;
    }
}

/// A copy task that panicked is a bug; it is counted as a failed object so the
/// job still ends with the right totals.
fn copy_task_ended(ctx: &JobContext, joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            tracing::error!(error = %e, "an import copy task panicked");
            ctx.job
                .failed("(unknown)", "the copy task panicked (a bug)".into());
        }
    }
}

/// Copies one object, again after a transient failure, and counts the outcome.
async fn copy_one(ctx: &JobContext, object: &Listed) {
    let landing = match paths::land(
        &ctx.dest,
        &ctx.source.prefix,
        &object.key,
        object.size_bytes,
    ) {
        Ok(landing) => landing,
        Err(reason) => return ctx.job.failed(&object.key, reason),
    };
    let mut backoff_ms = IMPORT_RETRY_BACKOFF_MS_MIN;
    for attempt in 1..=IMPORT_OBJECT_ATTEMPTS_MAX {
        match copy::copy(ctx, object, &landing).await {
            Ok(Outcome::Copied { .. }) => return ctx.job.update(|s| s.objects_copied += 1),
            Ok(Outcome::Skipped) => return ctx.job.update(|s| s.objects_skipped += 1),
            Err(e) if e.transient && attempt < IMPORT_OBJECT_ATTEMPTS_MAX => {
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(IMPORT_RETRY_BACKOFF_MS_MAX);
            }
            Err(e) => return ctx.job.failed(&object.key, e.reason),
        }
    }
    unreachable!("the last attempt returns");
}
