/**
 * URLs as the agent's log lines and messages show them: without user and password, query string
 * and fragment, where tokens and API keys travel (`?apikey=…`, `#access_token=…`). Scheme, host,
 * port and path stay, which is what an operator needs to tell one receiver from another.
 */

/** `https://user:pw@host:8443/path?token=x#y` → `https://host:8443/path?…`; a relative one loses its query too. */
export function redactUrl(url: string | URL): string {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    // A relative reference (a Location header's `/next?token=…`): its query and fragment go too.
    return String(url).replace(/[?#][\s\S]*$/, '?…');
  }
  const hidden = u.search !== '' || u.hash !== '';
  return `${u.protocol}//${u.host}${u.pathname}${hidden ? '?…' : ''}`;
}

/** Anything from a scheme to the next blank or quote: a URL as it appears inside a message. */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;

/**
 * Every URL in a message, redacted (see redactUrl). Applied to every log line the agent writes,
 * so a message that embeds a receiver's URL (a retry warning, a client library's error text)
 * cannot carry its credentials or query string, whoever wrote it.
 */
export function redactUrls(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(URL_IN_TEXT, (found) => {
    // Trailing punctuation belongs to the sentence, not to the URL.
    const m = /[.,;:)\]}]+$/.exec(found);
    const tail = m ? m[0] : '';
    const url = tail ? found.slice(0, -tail.length) : found;
    if (!/[@?#]/.test(url)) return found;
    return redactUrl(url) + tail;
  });
}
