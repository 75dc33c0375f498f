// Markdown of messages, descriptions and labels, which is untrusted: marked
// turns it into HTML, with any raw HTML of the source escaped as text, and
// DOMPurify keeps only inert HTML (no scripts, no
// event handlers, no javascript: links, no inline styles, which the
// server's Content-Security-Policy would refuse anyway). Code blocks are
// highlighted by highlight.js (the languages below) and get a copy button,
// wired by copyCodeOnClick.
import DOMPurify from 'dompurify';
import { Marked, type Tokens } from 'marked';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import css from 'highlight.js/lib/languages/css';
import diff from 'highlight.js/lib/languages/diff';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import plaintext from 'highlight.js/lib/languages/plaintext';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import shell from 'highlight.js/lib/languages/shell';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';

const languages: Record<string, any> = {
  bash, css, diff, go, java, javascript, json, plaintext, python, rust, shell, sql, typescript, xml, yaml,
};
for (const [name, lang] of Object.entries(languages)) hljs.registerLanguage(name, lang);

function escapeHTML(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function highlight(code: string, lang: string): { html: string; lang: string } {
  if (lang && hljs.getLanguage(lang)) {
    return { html: hljs.highlight(code, { language: lang, ignoreIllegals: true }).value, lang };
  }
  const auto = hljs.highlightAuto(code);
  return { html: auto.value, lang: auto.language || lang };
}

const marked = new Marked({ gfm: true, breaks: true, async: false });
marked.use({
  renderer: {
    // Raw HTML in markdown is shown as text: it never reaches a parser,
    // where even a handler attribute that is then removed counts as a
    // Content-Security-Policy violation.
    html({ text }: Tokens.HTML | Tokens.Tag) {
      return escapeHTML(text);
    },
    code({ text, lang }: Tokens.Code) {
      const name = (lang || '').trim().split(/\s+/)[0].toLowerCase();
      const out = highlight(text, name);
      const label = out.lang ? `<span class="code-lang">${escapeHTML(out.lang)}</span>` : '<span class="code-lang"></span>';
      return `<div class="code-block">${label}<button type="button" class="copy-code">Copy</button>` +
        `<pre><code class="hljs${out.lang ? ` language-${escapeHTML(out.lang)}` : ''}">${out.html}</code></pre></div>`;
    },
  },
});

// Links open in a new tab without a referrer; images load only from https:
// or data:image (what the CSP allows); others are dropped with their alt
// text kept, so that a relative src never makes a request.
DOMPurify.addHook('afterSanitizeAttributes', (node: Element) => {
  if (node.tagName === 'A') {
    const href = node.getAttribute('href') || '';
    if (href && !href.startsWith('#')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  } else if (node.tagName === 'IMG') {
    const src = node.getAttribute('src') || '';
    if (!/^https:\/\//i.test(src) && !/^data:image\/(png|gif|jpeg|webp);/i.test(src)) {
      node.replaceWith(document.createTextNode(node.getAttribute('alt') || ''));
    }
  }
});

const purifyConfig = {
  FORBID_TAGS: ['style', 'form', 'input', 'textarea', 'select', 'iframe', 'object', 'embed'],
  FORBID_ATTR: ['style', 'id', 'name'],
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/(?!\/))/i,
};

// renderMarkdown returns sanitized HTML for src.
export function renderMarkdown(src: string): string {
  const html = marked.parse(src || '') as string;
  return DOMPurify.sanitize(html, purifyConfig) as unknown as string;
}

// renderInline is renderMarkdown for one line (labels, names): no blocks.
export function renderInline(src: string): string {
  const html = marked.parseInline(src || '') as string;
  return DOMPurify.sanitize(html, purifyConfig) as unknown as string;
}

// copyCodeOnClick copies the code of a block whose copy button was clicked
// anywhere under root (the buttons come from the sanitized HTML, so they
// get no listener of their own).
export function copyCodeOnClick(ev: MouseEvent): void {
  const button = (ev.target as Element | null)?.closest?.('button.copy-code');
  if (!button) return;
  const code = button.parentElement?.querySelector('pre code');
  if (!code) return;
  const text = code.textContent || '';
  const done = (label: string) => {
    button.textContent = label;
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(() => done('Copied'), () => done('Copy failed'));
  } else {
    // Plain http on another host than localhost has no clipboard API.
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    done(document.execCommand('copy') ? 'Copied' : 'Select and copy');
    sel?.removeAllRanges();
  }
}
