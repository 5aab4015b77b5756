//! `cairn storage import s3://BUCKET[/PREFIX] --dest PATH …`: copy a bucket's
//! keys into a file system, and `--status [ID]` / `--cancel ID` for the jobs.
//!
//! The job runs on the first endpoint's node; this command starts it and, unless
//! `--detach`, follows it, printing a progress line whenever the counts move
//! (at most once per `FOLLOW_POLL_MS`) and a summary at the end. It exits
//! non-zero when the job failed, was cancelled, or any object failed. Ctrl-C
//! stops following, not the job. The secret comes from `--secret-access-key`,
//! `AWS_SECRET_ACCESS_KEY` or one line of stdin (`--secret-access-key-stdin`);
//! it is sent to the node once and never printed.

use std::fmt;
use std::io::BufRead;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::client::{Client, ImportJob, ImportSource};

/// How often a followed job is asked for its status.
const FOLLOW_POLL_MS: u64 = 1_000;
/// Status calls in a row that may fail (each already retried by the SDK)
/// before following gives up; the job itself goes on.
const FOLLOW_FAILURES_MAX: u32 = 30;

/// A secret from the command line or the environment: `Debug` hides it.
#[derive(Clone)]
pub struct SecretArg(String);

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_string()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX` (a prefix is a directory: `data`
    /// imports `data/…`, not `database/…`).
    #[arg(required_unless_present_any = ["status", "cancel"])]
    source: Option<String>,
    /// The source's S3 endpoint, e.g. https://ACCOUNT.r2.cloudflarestorage.com;
    /// absent: AWS (https://s3.REGION.amazonaws.com).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
    /// The region to sign for; Cloudflare R2 takes `auto`.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: Option<SecretArg>,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<SecretArg>,
    /// Read the secret access key from the first line of stdin.
    #[arg(long, conflicts_with = "secret_access_key")]
    secret_access_key_stdin: bool,
    /// The directory the keys below the prefix land in (made with its parents).
    #[arg(long, required_unless_present_any = ["status", "cancel"])]
    dest: Option<String>,
    /// Print the job id and return; the job runs on.
    #[arg(long)]
    detach: bool,
    /// List this node's import jobs, or show job ID.
    #[arg(long, value_name = "ID", num_args = 0..=1, conflicts_with_all = ["source", "cancel"])]
    status: Option<Option<String>>,
    /// Cancel job ID (files already written stay).
    #[arg(long, value_name = "ID", conflicts_with = "source")]
    cancel: Option<String>,
}

pub async fn run(client: &Client, fs: &str, args: ImportArgs) -> anyhow::Result<()> {
    if let Some(id) = &args.cancel {
        let job = client.cancel_import(id).await?;
        println!("{}", summary(&job));
        return Ok(());
    }
    match &args.status {
        Some(Some(id)) => return show(&client.import_job(id).await?),
        Some(None) => return list(&client.list_imports().await?),
        None => {}
    }
    let source = import_source(&args)?;
    let dest = args.dest.as_deref().expect("clap requires --dest");
    let job = client.start_import(&source, fs, dest).await?;
    println!(
        "import {} started: {} -> {}:{} on {}",
        job.id, job.source_url, job.fs, job.dest, job.endpoint
    );
    if args.detach {
        println!("follow it with: cairn storage import --status {}", job.id);
        return Ok(());
    }
    let job = follow(client, job).await?;
    println!("{}", summary(&job));
    print_failures(&job);
    if job.state != "succeeded" {
        let why = job.error.as_deref().unwrap_or(&job.state);
        anyhow::bail!("import {} {}: {why}", job.id, job.state);
    }
    Ok(())
}

fn import_source(args: &ImportArgs) -> anyhow::Result<ImportSource> {
    let access_key_id = args
        .access_key_id
        .clone()
        .context("an access key id is needed: --access-key-id or AWS_ACCESS_KEY_ID")?;
    let secret = if args.secret_access_key_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the secret access key from stdin")?;
        SecretArg(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        args.secret_access_key.clone().context(
            "a secret access key is needed: --secret-access-key, AWS_SECRET_ACCESS_KEY \
             or --secret-access-key-stdin",
        )?
    };
    Ok(ImportSource {
        url: args.source.clone().expect("clap requires the source"),
        endpoint: args.endpoint.clone().unwrap_or_default(),
        region: args.region.clone(),
        access_key_id: access_key_id.0,
        secret_access_key: secret.0,
    })
}

/// Polls the job until it ends; prints a line whenever its counts move.
async fn follow(client: &Client, mut job: ImportJob) -> anyhow::Result<ImportJob> {
    let mut shown = String::new();
    let mut failures = 0;
    // Runs as long as the job does (imports of large buckets take hours); every
    // status call is bounded, and too many failures in a row end the loop.
    while job.is_running() {
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        match client.import_job(&job.id).await {
            Ok(now) => {
                failures = 0;
                job = now;
            }
            Err(e) if e.code() == "not_found" => {
                anyhow::bail!("import {} is gone from its node (did it restart?)", job.id)
            }
            Err(e) => {
                failures += 1;
                if failures >= FOLLOW_FAILURES_MAX {
                    return Err(e).context(format!(
                        "asking for import {} failed {failures} times in a row; it may still run",
                        job.id
                    ));
                }
                continue;
            }
        }
        let line = progress(&job);
        if line != shown {
            println!("{line}");
            shown = line;
        }
    }
    Ok(job)
}

fn progress(job: &ImportJob) -> String {
    let listed = if job.listing_done { "" } else { "+" };
    format!(
        "listed {}{listed} objects ({}), copied {}, skipped {}, failed {}; {} at {}/s",
        job.objects_listed,
        human_bytes(job.bytes_listed),
        job.objects_copied,
        job.objects_skipped,
        job.objects_failed,
        human_bytes(job.bytes_copied),
        human_bytes(job.bytes_per_s),
    )
}

/// The closing line: `import ID STATE: C copied, S skipped, F failed of L
/// objects; B bytes copied (…) in T s, R/s`.
fn summary(job: &ImportJob) -> String {
    let end_ms = job.ended_ms.unwrap_or_else(crate::clock::now_ms);
    let secs = end_ms.saturating_sub(job.started_ms) as f64 / 1000.0;
    format!(
        "import {} {}: {} copied, {} skipped, {} failed of {} objects; \
         {} bytes copied ({}) in {secs:.1} s, {}/s",
        job.id,
        job.state,
        job.objects_copied,
        job.objects_skipped,
        job.objects_failed,
        job.objects_listed,
        job.bytes_copied,
        human_bytes(job.bytes_copied),
        human_bytes(job.bytes_per_s),
    )
}

fn print_failures(job: &ImportJob) {
    for failure in &job.failures {
        println!("failed: {:?}: {}", failure.key, failure.reason);
    }
    if job.failures_unlisted > 0 {
        println!("failed: {} more objects not listed", job.failures_unlisted);
    }
}

fn show(job: &ImportJob) -> anyhow::Result<()> {
    println!("id: {}", job.id);
    println!("state: {}", job.state);
    println!(
        "source: {} ({}, region {})",
        job.source_url, job.endpoint, job.region
    );
    println!("dest: {}:{}", job.fs, job.dest);
    println!("started: {}", time_string(job.started_ms));
    if let Some(end) = job.ended_ms {
        println!("ended: {}", time_string(end));
    }
    println!("progress: {}", progress(job));
    if let Some(error) = &job.error {
        println!("error: {error}");
    }
    println!("{}", summary(job));
    print_failures(job);
    Ok(())
}

fn list(jobs: &[ImportJob]) -> anyhow::Result<()> {
    println!(
        "{:<16} {:<10} {:>8} {:>8} {:>8} {:>8} {:>12}  SOURCE -> DEST",
        "ID", "STATE", "LISTED", "COPIED", "SKIPPED", "FAILED", "BYTES"
    );
    for job in jobs {
        println!(
            "{:<16} {:<10} {:>8} {:>8} {:>8} {:>8} {:>12}  {} -> {}:{}",
            job.id,
            job.state,
            job.objects_listed,
            job.objects_copied,
            job.objects_skipped,
            job.objects_failed,
            job.bytes_copied,
            job.source_url,
            job.fs,
            job.dest
        );
    }
    Ok(())
}

fn time_string(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `1.5 MiB` and friends, for people; exact counts are printed beside.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(65 * 1024 * 1024 + 123), "65.0 MiB");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let secret: SecretArg = "hunter2".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }
}
