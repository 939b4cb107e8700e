// JSON API client: session + CSRF, retries with backoff on network errors and 5xx/429, the API's
// own message on 4xx.

import { backoffDelay } from "./backoff.js";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// The API answers errors as {code, message} or ninja's {detail: "..."} / {detail: [{loc, msg}]}.
export function errorMessage(body, status) {
  if (body && typeof body.message === "string") return body.message;
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc ?? []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return `Request failed (HTTP ${status})`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function createApi({ csrfToken, retries = 3, onRetry = () => {} }) {
  async function request(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken;
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(path, {
          method,
          headers,
          credentials: "same-origin",
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (error) {
        if (attempt >= retries) throw new ApiError(0, "network", "The server cannot be reached; try again.", null);
        onRetry(attempt, error);
        await sleep(backoffDelay(attempt));
        continue;
      }
      const data = await response.json().catch(() => null);
      if (response.ok) return data;
      // Only a GET is safe to repeat blindly; an order carries its client_order_id so it is too.
      const retriable = response.status >= 500 || response.status === 429;
      if (retriable && attempt < retries && (method === "GET" || body?.client_order_id)) {
        onRetry(attempt, response.status);
        await sleep(backoffDelay(attempt));
        continue;
      }
      throw new ApiError(response.status, data?.code ?? "error", errorMessage(data, response.status), data);
    }
  }
  return {
    get: (path) => request(path),
    post: (path, body) => request(path, { method: "POST", body }),
    del: (path) => request(path, { method: "DELETE" }),
  };
}
