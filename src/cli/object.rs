//! `cairn object …`: objects and buckets from the command line.
//!
//! Owns argument parsing (which bucket, `--meta k=v`, `--range A-B`), progress bars
//! and output formats; every call goes through the SDK (`client::object`). A
//! download to a file lands in a temp file beside it and is renamed over FILE
//! only once complete and synced, so FILE is never left half-written.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{Client, ObjectInfo, ObjectPage, Progress, PutObjectOptions, Uploaded};
use crate::limits::OBJECT_LIST_PAGE_MAX;
use crate::state::object::{PRIVATE_BUCKET, PUBLIC_BUCKET};

/// Transfers smaller than this finish too fast for a progress bar to help.
const PROGRESS_BAR_BYTES_MIN: u64 = 8 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Upload a file as an object.
    Put(PutArgs),
    /// Download an object to a file, or to stdout.
    Get(GetArgs),
    /// Delete an object (succeeds if it is already gone, and says so).
    Rm {
        key: String,
        #[command(flatten)]
        bucket: BucketChoice,
    },
    /// Print an object's size, etag, content type, time, metadata and version.
    Head {
        key: String,
        #[command(flatten)]
        bucket: BucketChoice,
    },
    /// List objects: size, last modified (UTC) and key, one per line.
    Ls(LsArgs),
    /// Copy an object (no data moves: the copy shares the source's chunks).
    Cp {
        source_key: String,
        target_key: String,
        /// Bucket of the source.
        #[arg(long, default_value = PRIVATE_BUCKET)]
        bucket: String,
        /// Bucket of the copy (default: the source's).
        #[arg(long)]
        to_bucket: Option<String>,
    },
    /// Print a presigned URL that allows a GET (or, with --put, a PUT) without a token.
    Url {
        key: String,
        #[command(flatten)]
        bucket: BucketChoice,
        /// Seconds the URL stays valid (0: the cluster's default, 900).
        #[arg(long = "expires-secs", visible_alias = "expires", default_value_t = 0)]
        expires_secs: u64,
        /// Sign an upload (PUT) instead of a download.
        #[arg(long)]
        put: bool,
    },
    /// Buckets: create, delete, list.
    #[command(subcommand)]
    Bucket(BucketCommand),
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket (private unless --public: readable by anyone).
    Create {
        name: String,
        #[arg(long)]
        public: bool,
    },
    /// Delete a bucket.
    Delete { name: String },
    /// List buckets: name, visibility, creation time.
    List,
}

/// `--bucket B` or `--public`; neither means the built-in `private` bucket.
#[derive(Debug, Clone, Args)]
pub struct BucketChoice {
    /// Bucket to use (default: private).
    #[arg(long, conflicts_with = "public")]
    bucket: Option<String>,
    /// Use the built-in public bucket.
    #[arg(long)]
    public: bool,
}

impl BucketChoice {
    fn name(&self) -> String {
        match (&self.bucket, self.public) {
            (Some(bucket), _) => bucket.clone(),
            (None, true) => PUBLIC_BUCKET.to_string(),
            (None, false) => PRIVATE_BUCKET.to_string(),
        }
    }
}

#[derive(Debug, Args)]
pub struct PutArgs {
    file: PathBuf,
    key: String,
    #[command(flatten)]
    bucket: BucketChoice,
    /// Content type stored with the object and sent on HTTP downloads.
    #[arg(long)]
    content_type: Option<String>,
    /// User metadata, `name=value`; repeat for more.
    #[arg(long = "meta", value_name = "NAME=VALUE")]
    meta: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    key: String,
    /// Write to this file (through a temp file beside it) instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    #[command(flatten)]
    bucket: BucketChoice,
    /// Bytes A to B, both included (as HTTP Range), or `A-` for A to the end.
    #[arg(long, value_parser = parse_range)]
    range: Option<ByteRange>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    bucket: BucketChoice,
    #[arg(long, default_value = "")]
    prefix: String,
    /// Fold keys that share a prefix up to this string into one `PRE` line.
    #[arg(long, default_value = "")]
    delimiter: String,
    /// Stop after N lines (objects and prefixes; default: all).
    #[arg(long)]
    limit: Option<u64>,
}

/// A byte range in the SDK's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset_bytes: u64,
    /// 0 = to the end of the object.
    pub length_bytes: u64,
}

pub async fn run(client: Client, command: ObjectCommand) -> anyhow::Result<()> {
    match command {
        ObjectCommand::Put(args) => put(&client, args).await,
        ObjectCommand::Get(args) => get(&client, args).await,
        ObjectCommand::Rm { key, bucket } => {
            let bucket = bucket.name();
            if client.delete_object(&bucket, &key).await? {
                println!("deleted {bucket}/{key}");
            } else {
                println!("{bucket}/{key} did not exist");
            }
            Ok(())
        }
        ObjectCommand::Head { key, bucket } => {
            let info = client.head_object(&bucket.name(), &key).await?;
            print!("{}", describe(&info));
            Ok(())
        }
        ObjectCommand::Ls(args) => list(&client, args).await,
        ObjectCommand::Cp {
            source_key,
            target_key,
            bucket,
            to_bucket,
        } => {
            let to_bucket = to_bucket.unwrap_or_else(|| bucket.clone());
            let copied = client
                .copy_object((&bucket, &source_key), (&to_bucket, &target_key))
                .await?;
            // A copy's reply carries no size: it is the source's.
            println!("copied {bucket}/{source_key} to {to_bucket}/{target_key}");
            println!("etag    {}", copied.etag);
            println!("version {}", copied.version);
            Ok(())
        }
        ObjectCommand::Url {
            key,
            bucket,
            expires_secs,
            put,
        } => {
            let method = if put { "PUT" } else { "GET" };
            let (url, expires_at_s) = client
                .presign(&bucket.name(), &key, method, expires_secs)
                .await?;
            println!("{url}");
            eprintln!(
                "{method} allowed until {}",
                rfc3339_utc(expires_at_s * 1000)
            );
            Ok(())
        }
        ObjectCommand::Bucket(command) => bucket(&client, command).await,
    }
}

async fn put(client: &Client, args: PutArgs) -> anyhow::Result<()> {
    let options = PutObjectOptions {
        content_type: args.content_type.unwrap_or_default(),
        metadata: parse_meta(&args.meta)?,
    };
    let size_bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let bar = progress_bar(size_bytes);
    let uploaded = client
        .put_object_file(
            &args.bucket.name(),
            &args.key,
            &args.file,
            &options,
            bar.as_ref().map(progress_callback),
        )
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let uploaded = uploaded?;
    print_uploaded(&uploaded);
    println!(
        "{} of {} chunks sent",
        uploaded.chunks_sent, uploaded.chunks_total
    );
    Ok(())
}

fn print_uploaded(uploaded: &Uploaded) {
    println!("etag    {}", uploaded.etag);
    println!("size    {} bytes", uploaded.size);
    println!("version {}", uploaded.version);
}

async fn get(client: &Client, args: GetArgs) -> anyhow::Result<()> {
    let bucket = args.bucket.name();
    let range = args.range.unwrap_or(ByteRange {
        offset_bytes: 0,
        length_bytes: 0,
    });
    // The download reports only bytes so far: learn the total first, and only when
    // a bar can be shown at all.
    let bar = if std::io::stderr().is_terminal() {
        let info = client.head_object(&bucket, &args.key).await?;
        progress_bar(range_bytes(info.size, range))
    } else {
        None
    };
    let progress = bar.as_ref().map(progress_callback);
    let sdk_range = (range.offset_bytes, range.length_bytes);
    let result = match &args.output {
        Some(path) => get_to_file(client, (&bucket, &args.key), sdk_range, path, progress).await,
        None => {
            let mut out = stdout_file()?;
            client
                .get_object_to(&bucket, &args.key, sdk_range, &mut out, progress)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Stdout as an async file (a duplicate of fd 1): tokio's own stdout needs a
/// feature this crate does not enable, and a file writes from tokio's blocking
/// pool, so a slow reader of the pipe never stalls the runtime.
fn stdout_file() -> anyhow::Result<tokio::fs::File> {
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

/// Bytes a download of `range` from an object of `size_bytes` carries.
fn range_bytes(size_bytes: u64, range: ByteRange) -> u64 {
    let available = size_bytes.saturating_sub(range.offset_bytes);
    match range.length_bytes {
        0 => available,
        length => length.min(available),
    }
}

async fn get_to_file(
    client: &Client,
    (bucket, key): (&str, &str),
    range: (u64, u64),
    path: &Path,
    progress: Option<Progress>,
) -> anyhow::Result<()> {
    let temp = temp_path_beside(path)?;
    let downloaded = download_into(client, (bucket, key), range, &temp, progress).await;
    if let Err(e) = downloaded {
        // Best effort: the download's error is the one worth reporting.
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    tokio::fs::rename(&temp, path)
        .await
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
}

async fn download_into(
    client: &Client,
    (bucket, key): (&str, &str),
    range: (u64, u64),
    temp: &Path,
    progress: Option<Progress>,
) -> anyhow::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .await
        .with_context(|| format!("creating {}", temp.display()))?;
    client
        .get_object_to(bucket, key, range, &mut file, progress)
        .await?;
    // On disk before the rename makes it visible under its name.
    file.sync_all()
        .await
        .with_context(|| format!("syncing {}", temp.display()))
}

/// `dir/.name.cairn-<pid>.tmp` for `dir/name`: same directory, so the rename
/// stays within one file system.
fn temp_path_beside(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("-o {} does not name a file", path.display()))?;
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".cairn-{}.tmp", std::process::id()));
    Ok(path.with_file_name(temp))
}

fn progress_bar(total_bytes: u64) -> Option<ProgressBar> {
    if total_bytes < PROGRESS_BAR_BYTES_MIN || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bytes:>10} / {total_bytes} [{wide_bar}] {binary_bytes_per_sec} eta {eta}",
    )
    .expect("the progress template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

fn progress_callback(bar: &ProgressBar) -> Progress {
    let bar = bar.clone();
    // An upload retry starts again from 0; set_position moves the bar back too.
    Arc::new(move |bytes| bar.set_position(bytes))
}

fn describe(info: &ObjectInfo) -> String {
    let content_type = if info.content_type.is_empty() {
        "-"
    } else {
        &info.content_type
    };
    let mut text = format!(
        "key           {}\nsize          {} bytes\netag          {}\ncontent-type  {}\n\
         last-modified {}\nversion       {}\n",
        info.key,
        info.size,
        info.etag,
        content_type,
        rfc3339_utc(info.last_modified_ms),
        info.version
    );
    for (name, value) in &info.metadata {
        text.push_str(&format!("meta          {name}={value}\n"));
    }
    text
}

async fn list(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let bucket = args.bucket.name();
    let mut options = crate::client::ListObjectsOptions {
        prefix: args.prefix,
        delimiter: args.delimiter,
        ..Default::default()
    };
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    while remaining > 0 {
        options.limit = remaining.min(u64::from(OBJECT_LIST_PAGE_MAX)) as u32;
        let page = client.list_objects(&bucket, &options).await?;
        let lines = listing_lines(&page, remaining);
        remaining -= lines.len() as u64;
        let mut out = std::io::stdout().lock();
        for line in lines {
            writeln!(out, "{line}")?;
        }
        drop(out);
        match page.next_continuation_token {
            Some(token) if token == options.continuation_token => {
                anyhow::bail!("the listing did not advance past {token:?}")
            }
            Some(token) => options.continuation_token = token,
            None => break,
        }
    }
    Ok(())
}

/// One page's lines in key order, at most `lines_max`: objects as
/// `size  time  key`, common prefixes as `PRE prefix` with the prefix under the
/// key column.
fn listing_lines(page: &ObjectPage, lines_max: u64) -> Vec<String> {
    let mut entries: Vec<(&str, String)> = page
        .objects
        .iter()
        .map(|o| {
            let line = format!(
                "{:>12}  {}  {}",
                o.size,
                rfc3339_utc(o.last_modified_ms),
                o.key
            );
            (o.key.as_str(), line)
        })
        .chain(
            page.common_prefixes
                .iter()
                .map(|p| (p.as_str(), format!("{:>39} {p}", "PRE"))),
        )
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let lines_max = usize::try_from(lines_max).unwrap_or(usize::MAX);
    entries.into_iter().take(lines_max).map(|e| e.1).collect()
}

async fn bucket(client: &Client, command: BucketCommand) -> anyhow::Result<()> {
    match command {
        BucketCommand::Create { name, public } => client.create_bucket(&name, public).await?,
        BucketCommand::Delete { name } => client.delete_bucket(&name).await?,
        BucketCommand::List => {
            for b in client.list_buckets().await? {
                let visibility = if b.public { "public" } else { "private" };
                // The two built-in buckets exist from the start, with no time.
                let created = match b.created_ms {
                    0 => "built-in".to_string(),
                    ms => rfc3339_utc(ms),
                };
                println!("{}\t{visibility}\t{created}", b.name);
            }
        }
    }
    Ok(())
}

/// Parses `--meta name=value` flags; a name given twice is an error rather than
/// a silent overwrite.
fn parse_meta(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut metadata = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--meta {pair:?} must be NAME=VALUE"))?;
        anyhow::ensure!(!name.is_empty(), "--meta {pair:?} has an empty name");
        let previous = metadata.insert(name.to_string(), value.to_string());
        anyhow::ensure!(previous.is_none(), "--meta names {name:?} twice");
    }
    Ok(metadata)
}

/// Parses `A-B` (bytes A to B, both included, as an HTTP Range) or `A-`.
fn parse_range(text: &str) -> anyhow::Result<ByteRange> {
    let (first, last) = text
        .split_once('-')
        .context("the range must be A-B or A- (bytes, first included, last included)")?;
    anyhow::ensure!(
        !first.is_empty(),
        "suffix ranges (-N) are not supported; give A-B or A-"
    );
    let offset_bytes: u64 = first
        .parse()
        .with_context(|| format!("range start {first:?} is not a byte offset"))?;
    if last.is_empty() {
        return Ok(ByteRange {
            offset_bytes,
            length_bytes: 0,
        });
    }
    let last: u64 = last
        .parse()
        .with_context(|| format!("range end {last:?} is not a byte offset"))?;
    anyhow::ensure!(last >= offset_bytes, "range end {last} is before its start");
    let length_bytes = (last - offset_bytes)
        .checked_add(1)
        .context("the range is too long")?;
    Ok(ByteRange {
        offset_bytes,
        length_bytes,
    })
}

/// `2026-01-31T12:34:56.789Z` for milliseconds since the Unix epoch, UTC.
pub(super) fn rfc3339_utc(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|time| time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{unix_ms} ms after 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(offset_bytes: u64, length_bytes: u64) -> ByteRange {
        ByteRange {
            offset_bytes,
            length_bytes,
        }
    }

    #[test]
    fn ranges_include_both_ends_and_an_open_end_reads_to_the_end() {
        assert_eq!(parse_range("0-0").unwrap(), range(0, 1));
        assert_eq!(parse_range("10-19").unwrap(), range(10, 10));
        assert_eq!(parse_range("5-").unwrap(), range(5, 0));
        assert_eq!(
            parse_range(&format!("1-{}", u64::MAX)).unwrap(),
            range(1, u64::MAX)
        );
    }

    #[test]
    fn malformed_ranges_are_rejected() {
        for text in [
            "",
            "5",
            "-5",
            "9-3",
            "a-3",
            "3-b",
            "1-2-3",
            &format!("0-{}", u64::MAX),
        ] {
            assert!(parse_range(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn range_bytes_clamps_to_the_object() {
        assert_eq!(range_bytes(100, range(0, 0)), 100);
        assert_eq!(range_bytes(100, range(90, 0)), 10);
        assert_eq!(range_bytes(100, range(90, 50)), 10);
        assert_eq!(range_bytes(100, range(200, 5)), 0);
    }

    #[test]
    fn meta_splits_at_the_first_equals_sign_and_refuses_duplicates() {
        let meta = parse_meta(&["a=1".into(), "b=x=y".into(), "c=".into()]).unwrap();
        assert_eq!(meta["a"], "1");
        assert_eq!(meta["b"], "x=y");
        assert_eq!(meta["c"], "");
        assert!(parse_meta(&["a=1".into(), "a=2".into()]).is_err());
        assert!(parse_meta(&["novalue".into()]).is_err());
        assert!(parse_meta(&["=v".into()]).is_err());
    }

    #[test]
    fn times_print_as_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_utc(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_temp_file_sits_beside_the_target() {
        let pid = std::process::id();
        assert_eq!(
            temp_path_beside(Path::new("out/data.bin")).unwrap(),
            PathBuf::from(format!("out/.data.bin.cairn-{pid}.tmp"))
        );
        assert_eq!(
            temp_path_beside(Path::new("data.bin")).unwrap(),
            PathBuf::from(format!(".data.bin.cairn-{pid}.tmp"))
        );
        assert!(temp_path_beside(Path::new("/")).is_err());
    }

    #[test]
    fn a_listing_merges_prefixes_and_objects_in_key_order() {
        let object = |key: &str| ObjectInfo {
            key: key.into(),
            size: 7,
            etag: String::new(),
            content_type: String::new(),
            last_modified_ms: 0,
            metadata: BTreeMap::new(),
            version: 1,
        };
        let page = ObjectPage {
            objects: vec![object("a.txt"), object("c.txt")],
            common_prefixes: vec!["b/".into()],
            next_continuation_token: None,
        };
        let lines = listing_lines(&page, 10);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("  1970-01-01T00:00:00.000Z  a.txt"));
        assert!(lines[1].ends_with(" PRE b/"));
        // The prefix sits in the key column.
        assert_eq!(lines[1].find("b/"), lines[0].find("a.txt"));
        assert_eq!(listing_lines(&page, 2).len(), 2);
    }
}
