//! File systems over REST: `/storage/{fs}{path}` (HEAD exists, GET lists a
//! directory or streams a file, POST uploads multipart `file` into the chunk
//! pipeline as it arrives, PUT makes a directory with its parents, DELETE
//! removes, `?removeall=true` a whole tree), `/storage/du` and `/storage`.
//!
//! Paths are taken whole after the file system name (slashes, spaces and
//! non-ASCII included, percent-decoded); a trailing slash is ignored.
//!
//! cairn's own additions, for the dashboard, live under `/cairn/`: file systems
//! with usage (and this node's `local`), paged listings with sizes and times,
//! and rename.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Rest};
use crate::api::error::ApiError;
use crate::api::service::fs::content::UploadHeader;
use crate::api::service::fs::{Place, RemoveMode, Target};
use crate::limits::FS_READDIR_PAGE_MAX;
use crate::raft::Consistency;
use crate::state::fs::{Kind, Owner};
use crate::state::{self};

/// Entries one directory listing may return: the protocol has no paging, and a
/// listing is built in memory.
pub const LIST_ENTRIES_MAX: usize = 100_000;
/// Mode of files and directories created over REST (the protocol sends none).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

pub fn routes() -> Router<Rest> {
    let at_path = get(get_path)
        .head(head_path)
        .post(upload)
        .put(mkdir)
        .delete(remove);
    let at_root = get(get_root).head(head_root).put(mkdir_root);
    Router::new()
        .route("/storage", get(list_fs))
        .route("/storage/du", get(du))
        .route("/storage/{fs}", at_root.clone())
        .route("/storage/{fs}/", at_root)
        .route("/storage/{fs}/{*path}", at_path)
        .route("/cairn/storage", get(file_systems))
        .route("/cairn/storage/{fs}/entries", get(entries))
        .route("/cairn/storage/{fs}/rename", axum::routing::post(rename))
}

/// `/` + the path with trailing slashes dropped (the root stays `/`).
fn normalise(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    format!("/{trimmed}")
}

async fn head_root(state: State<Rest>, Path(fs): Path<String>) -> Response {
    head_path(state, Path((fs, String::new()))).await
}

/// Exactly 200 for an existing path (the CLI treats anything else as missing).
async fn head_path(State(rest): State<Rest>, Path((fs, path)): Path<(String, String)>) -> Response {
    let target = Target::Path(normalise(&path));
    match rest
        .services
        .fs
        .stat(&fs, &target, Consistency::Linearizable)
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => StatusCode::from_u16(e.http_status())
            .unwrap_or(StatusCode::NOT_FOUND)
            .into_response(),
    }
}

async fn get_root(state: State<Rest>, Path(fs): Path<String>) -> Result<Response, ApiError> {
    get_path(state, Path((fs, String::new()))).await
}

/// A directory's entries as JSON, or a file's bytes, streamed.
async fn get_path(
    State(rest): State<Rest>,
    Path((fs, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let path = normalise(&path);
    let files = &rest.services.fs;
    let target = Target::Path(path.clone());
    let (entry, _) = files.stat(&fs, &target, Consistency::Linearizable).await?;
    if entry.inode.kind == Kind::Dir {
        return Ok(Json(list_dir(&rest, &fs, &path).await?).into_response());
    }
    let (entry, stream) = files
        .download(&fs, &target, (0, 0), Consistency::Linearizable)
        .await?;
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(entry.inode.size)),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

async fn list_dir(rest: &Rest, fs: &str, path: &str) -> Result<Value, ApiError> {
    let files = &rest.services.fs;
    let dir = Target::Path(path.to_string());
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let (page, _) = files
            .readdir(
                fs,
                &dir,
                (&after, FS_READDIR_PAGE_MAX, false),
                Consistency::Linearizable,
            )
            .await?;
        for (name, entry, _) in page.entries {
            if items.len() >= LIST_ENTRIES_MAX {
                let n = (LIST_ENTRIES_MAX + 1) as u64;
                let max = LIST_ENTRIES_MAX as u64;
                return Err(state::Error::limit("entries", max, n, "entries").into());
            }
            let kind = if entry.kind == Kind::Dir {
                "dir"
            } else {
                "file"
            };
            let full = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            items.push(json!({"type": kind, "name": name, "path": full}));
        }
        match page.next_after {
            Some(next) => after = next,
            None => return Ok(Value::Array(items)),
        }
    }
}

/// Streams the multipart `file` part into the file at the path (replacing it,
/// creating missing parents). A path ending in `/` names a directory: the
/// part's file name is appended.
async fn upload(
    State(rest): State<Rest>,
    Path((fs, path)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, request_body) = request.into_parts();
    let mut form = body::multipart(&parts.headers, request_body)?;
    let field = body::field(&mut form, "file").await?;
    let mut path = normalise(&path);
    if path == "/" || rest_path_is_dir(&parts.uri) {
        let name = field.file_name().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(state::Error::invalid("path", "name the file to upload").into());
        }
        path = format!("{}/{name}", path.trim_end_matches('/'));
    }
    let header = UploadHeader {
        session: None,
        fs,
        path,
        parents: true,
        exclusive: false,
        owner: Owner {
            mode: FILE_MODE,
            uid: 0,
            gid: 0,
        },
        mtime_ns: None,
    };
    let pieces = futures::StreamExt::map(body::field_stream(field), |piece| {
        piece.map(crate::api::chunk_upload::Piece::Data)
    });
    let uploaded = rest.services.fs.upload(header, pieces).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"size": uploaded.entry.inode.size, "bytes_received": uploaded.bytes_received})),
    )
        .into_response())
}

fn rest_path_is_dir(uri: &axum::http::Uri) -> bool {
    uri.path().ends_with('/')
}

async fn mkdir_root(
    State(rest): State<Rest>,
    Path(fs): Path<String>,
) -> Result<StatusCode, ApiError> {
    make_dir(&rest, &fs, "/").await
}

/// mkdir -p: an existing directory is fine.
async fn mkdir(
    State(rest): State<Rest>,
    Path((fs, path)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    make_dir(&rest, &fs, &normalise(&path)).await
}

async fn make_dir(rest: &Rest, fs: &str, path: &str) -> Result<StatusCode, ApiError> {
    let files = &rest.services.fs;
    if let Ok((entry, _)) = files
        .stat(
            fs,
            &Target::Path(path.to_string()),
            Consistency::Linearizable,
        )
        .await
    {
        if entry.inode.kind == Kind::Dir {
            return Ok(StatusCode::OK);
        }
    }
    let owner = Owner {
        mode: DIR_MODE,
        uid: 0,
        gid: 0,
    };
    let place = Place::Path(path.to_string());
    files
        .make(None, fs, &place, Kind::Dir, owner, (false, true), "")
        .await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
struct RemoveQuery {
    removeall: Option<String>,
}

/// Removes a file, an empty directory, or with `removeall=true` a whole tree.
async fn remove(
    State(rest): State<Rest>,
    Path((fs, path)): Path<(String, String)>,
    Query(query): Query<RemoveQuery>,
) -> Result<Response, ApiError> {
    let path = normalise(&path);
    let files = &rest.services.fs;
    let (entry, _) = files
        .stat(&fs, &Target::Path(path.clone()), Consistency::Linearizable)
        .await?;
    let all = query
        .removeall
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mode = match (entry.inode.kind, all) {
        (Kind::Dir, true) => RemoveMode::Recursive,
        (Kind::Dir, false) => RemoveMode::Rmdir,
        _ => RemoveMode::Unlink,
    };
    let (removed, _) = files.remove(None, &fs, &Place::Path(path), mode).await?;
    Ok((StatusCode::OK, Json(json!({"removed": removed}))).into_response())
}

fn fs_object(name: &str, bytes_used: u64) -> Value {
    json!({"metadata": {"name": name}, "status": {"total_usage_bytes": bytes_used}})
}

/// Usage of all replicated file systems together.
async fn du(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let all = rest.services.fs.list_fs(Consistency::Linearizable).await?;
    let total: u64 = all.iter().map(|(_, r)| r.bytes_used).sum();
    Ok(Json(fs_object("", total)))
}

async fn list_fs(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let all = rest.services.fs.list_fs(Consistency::Linearizable).await?;
    let list = all
        .iter()
        .map(|(name, r)| fs_object(name, r.bytes_used))
        .collect();
    Ok(Json(Value::Array(list)))
}

/// Every replicated file system with its usage, and `local` when this node
/// has node-local storage (its disk's capacity and free bytes with it).
async fn file_systems(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let files = &rest.services.fs;
    let all = files.list_fs(Consistency::Linearizable).await?;
    let mut list: Vec<Value> = all
        .iter()
        .map(|(name, r)| {
            json!({"name": name, "local": false, "bytes_used": r.bytes_used,
                   "inodes_used": r.inodes_used, "quota_bytes": r.quota_bytes,
                   "created_ms": r.created_ms})
        })
        .collect();
    if let Ok((record, Some((capacity, free)))) =
        files.statfs(state::fs::LOCAL_FS, Consistency::Stale).await
    {
        list.push(json!({"name": state::fs::LOCAL_FS, "local": true,
            "node_id": rest.services.node.id, "bytes_used": record.bytes_used,
            "inodes_used": record.inodes_used, "disk_bytes": capacity, "free_bytes": free}));
    }
    Ok(Json(json!({ "file_systems": list })))
}

#[derive(Debug, Default, Deserialize)]
struct EntriesQuery {
    path: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// One page of a directory, each entry with its kind, size and modification
/// time; `next_after` continues the listing (null on the last page).
async fn entries(
    State(rest): State<Rest>,
    Path(fs): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let path = normalise(&q.path.unwrap_or_default());
    let after = q.after.unwrap_or_default();
    let limit = match q.limit.unwrap_or(0) {
        0 => FS_READDIR_PAGE_MAX,
        n => n.min(FS_READDIR_PAGE_MAX),
    };
    let (page, _) = rest
        .services
        .fs
        .readdir(
            &fs,
            &Target::Path(path.clone()),
            (&after, limit, true),
            Consistency::Linearizable,
        )
        .await?;
    let list: Vec<Value> = page
        .entries
        .iter()
        .map(|(name, dir_entry, entry)| {
            let kind = match dir_entry.kind {
                Kind::Dir => "dir",
                Kind::Symlink => "symlink",
                Kind::File => "file",
            };
            let full = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            let (size, mtime_ms) = entry
                .as_ref()
                .map(|e| (e.inode.size, e.inode.mtime_ns.div_euclid(1_000_000)))
                .unwrap_or((0, 0));
            json!({"name": name, "path": full, "type": kind, "size": size, "mtime_ms": mtime_ms})
        })
        .collect();
    Ok(Json(
        json!({"path": path, "entries": list, "next_after": page.next_after}),
    ))
}

#[derive(Debug, Deserialize)]
struct RenameBody {
    from: String,
    to: String,
    /// Replace what is at `to` (a file or an empty directory); off by default.
    #[serde(default)]
    replace: bool,
}

/// Renames `from` to `to`; 409 when `to` exists, unless `replace`.
async fn rename(
    State(rest): State<Rest>,
    Path(fs): Path<String>,
    request: Body,
) -> Result<StatusCode, ApiError> {
    let bytes = body::read_bounded(request, "body", RENAME_BODY_BYTES_MAX).await?;
    let RenameBody { from, to, replace } = serde_json::from_slice(&bytes)
        .map_err(|e| state::Error::invalid("body", format!("not the expected JSON: {e}")))?;
    let from = Place::Path(normalise(&from));
    let to = Place::Path(normalise(&to));
    rest.services
        .fs
        .rename(None, &fs, (&from, &to), !replace)
        .await?;
    Ok(StatusCode::OK)
}

/// Two paths at most `PATH_MAX` (4 KiB) each, in JSON.
const RENAME_BODY_BYTES_MAX: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn paths_lose_trailing_slashes_but_keep_the_root() {
        assert_eq!(normalise(""), "/");
        assert_eq!(normalise("/"), "/");
        assert_eq!(normalise("d/"), "/d");
        assert_eq!(normalise("a b/ü/x.txt"), "/a b/ü/x.txt");
    }
}
