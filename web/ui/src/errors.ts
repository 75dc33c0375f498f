// What the UI says for each error code and close code of the protocol
// (docs/protocol.md §1.1, §2.5): people read sentences, not codes.

const errorTexts: Record<string, string> = {
  bad_request: 'The server could not understand the request.',
  unauthorized: 'Please sign in.',
  invalid_credentials: 'That email or password is not right. Check both and try again.',
  method_not_allowed: 'The server does not allow this action.',
  unsupported_media_type: 'The server expected another kind of data.',
  unavailable: 'The server is busy or cannot reach its storage right now. Nothing was saved; please try again in a moment.',
  too_large: 'That is too large for the server.',
  forbidden: 'You are not allowed to do that.',
  not_found: 'That no longer exists, or it is not yours.',
  rate_limited: 'You are going a little fast. Please wait a moment and try again.',
  bad_frame: 'The app sent something the server could not read.',
  unknown_type: 'The app sent something the server does not know.',
  invalid_field: 'Something in the request is missing or not valid.',
  protocol: 'The app and the server got out of step. Reload the page if this keeps happening.',
  unsupported_protocol: 'This page is out of date for the server. Please reload it.',
  invalid_settings: 'That setting value is not allowed.',
  busy: 'The assistant has too much to do right now. Please wait and send again.',
  too_many_sessions: 'You have too many chats open. Close some tabs and try again.',
  unsupported_type: 'That kind of file is not accepted here.',
  too_many_files: 'That is more files than allowed here.',
  handler_error: 'Something went wrong while answering. Please try again.',
  internal: 'The server ran into a problem. Please try again.',
  network: 'The server cannot be reached. Check your connection and try again.',
  upload_failed: 'The upload failed. Please try again.',
};

// errorText is the sentence for an error code; detail, the server's own
// message, is added where it says something a person can act on.
export function errorText(code: string, detail?: string): string {
  const base = errorTexts[code] || 'Something went wrong. Please try again.';
  if (!detail) return base;
  switch (code) {
    case 'invalid_field':
    case 'invalid_settings':
    case 'too_large':
    case 'rate_limited':
    case 'unsupported_type':
    case 'too_many_files':
    case 'forbidden':
      return `${base} (${detail})`;
    default:
      return base;
  }
}

// What a close code means and what the client does about it (§2.5).
export type CloseAction = 'ended' | 'reconnect' | 'reconnect-once' | 'login' | 'elsewhere' | 'resume-thread' | 'stay-closed';

export function closeAction(code: number): CloseAction {
  switch (code) {
    case 1000: return 'ended';
    case 1001: case 1006: case 4429: return 'reconnect';
    case 4408: return 'reconnect-once';
    case 4401: return 'login';
    case 4409: return 'elsewhere';
    case 4410: return 'resume-thread';
    default: return 'stay-closed';
  }
}

const closeTexts: Record<number, string> = {
  1000: 'This chat has ended.',
  1007: 'The connection was closed because the app sent text the server could not read.',
  1008: 'The connection was closed after too many invalid requests.',
  1009: 'The connection was closed because a message was too large.',
  4401: 'Your sign-in has ended. Please sign in again.',
  4408: 'The chat did not open in time.',
  4409: 'This chat was opened in another tab or window.',
  4410: 'This chat session expired on the server; it was reopened from its history.',
};

export function closeText(code: number): string {
  return closeTexts[code] || `The connection closed unexpectedly (code ${code}).`;
}
