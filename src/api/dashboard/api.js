// The REST client the pages share: the token (this tab's session storage
// only), JSON calls, uploads with progress, and the server's error messages.

const TOKEN_KEY = "cairn.token";
export const BASE = "/api/v1";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

/// An error the server answered, with its HTTP status and message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/// Called when the server refuses the token (the app shows the sign-in page).
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

async function errorOf(response) {
  let code = "";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body.code || "";
    message = body.message || message;
  } catch (_) {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/// Each path segment percent-encoded, slashes kept.
export function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      search.set(name, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/// A call to `BASE + path`: the parsed JSON (or the Response with `raw`).
export async function call(method, path, { json, body, raw, headers } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token()}`, ...(headers || {}) } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(BASE + path, init);
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) {
      onUnauthorized(error);
    }
    throw error;
  }
  if (raw) {
    return response;
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/// Sends `body` with XMLHttpRequest (fetch reports no upload progress),
/// calling `progress(sentBytes, totalBytes)`. `url` is absolute or from `/`.
export function send(method, url, body, { progress, authorized = true } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    if (authorized) {
      xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    }
    xhr.upload.onprogress = (event) => {
      if (progress && event.lengthComputable) {
        progress(event.loaded, event.total);
      }
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(xhr.responseText ? safeJson(xhr.responseText) : null);
        return;
      }
      let code = "";
      let message = `${xhr.status} ${xhr.statusText}`;
      const parsed = safeJson(xhr.responseText);
      if (parsed && parsed.message) {
        code = parsed.code || "";
        message = parsed.message;
      }
      if (xhr.status === 401 && authorized) {
        onUnauthorized(new ApiError(401, code, message));
      }
      reject(new ApiError(xhr.status, code, message));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the request did not reach the server"));
    xhr.send(body);
  });
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch (_) {
    return null;
  }
}

/// Saves a response body as a file named `name` (through a blob URL).
export async function saveResponse(response, name) {
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
