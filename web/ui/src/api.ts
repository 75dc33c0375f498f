// HTTP calls to the server's routes (docs/protocol.md §1.2).

export interface ApiResult<T> {
  ok: boolean;
  status: number;
  data: T | null;
  code: string; // the error code when !ok ('' otherwise)
  message: string; // the server's message when !ok
  retryAfter: string | null;
}

// NetworkError is thrown when the server cannot be reached at all.
export class NetworkError extends Error {}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<ApiResult<T>> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const init: RequestInit = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new NetworkError(String(e));
  }
  let data: any = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { /* no JSON body */ }
  }
  const err = (!res.ok && data && data.error) || {};
  return {
    ok: res.ok,
    status: res.status,
    data: res.ok ? data : null,
    code: res.ok ? '' : err.code || `http_${res.status}`,
    message: res.ok ? '' : err.message || '',
    retryAfter: res.headers.get('Retry-After'),
  };
}

// upload posts files to POST /files with progress (fetch has none for
// request bodies), and resolves with the parsed answer.
export function upload(url: string, form: FormData, onProgress: (fraction: number) => void): Promise<ApiResult<{ files: any[] }>> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener('error', () => reject(new NetworkError('upload failed')));
    xhr.addEventListener('load', () => {
      let data: any = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* no JSON body */ }
      const ok = xhr.status >= 200 && xhr.status < 300;
      const err = (!ok && data && data.error) || {};
      resolve({
        ok, status: xhr.status, data: ok ? data : null,
        code: ok ? '' : err.code || `http_${xhr.status}`, message: ok ? '' : err.message || '',
        retryAfter: xhr.getResponseHeader('Retry-After'),
      });
    });
    xhr.send(form);
  });
}
