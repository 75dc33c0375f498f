// Icons drawn inline (no icon font, no network): the UI's own, and the
// profile and starter icons the demo and most applications name (Lucide's
// names); an https: URL is shown as an image; other names get a dot.
import type { JSX } from 'preact';

const paths: Record<string, JSX.Element> = {
  menu: <path d="M4 6h16M4 12h16M4 18h16" />,
  x: <path d="M6 6l12 12M18 6 6 18" />,
  plus: <path d="M12 5v14M5 12h14" />,
  search: <><circle cx="11" cy="11" r="7" /><path d="m20 20-4-4" /></>,
  pencil: <path d="M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4" />,
  trash: <path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13" />,
  send: <path d="M4 12 20 4l-6 16-3-7-7-1z" />,
  stop: <rect x="6" y="6" width="12" height="12" rx="1" />,
  sun: <><circle cx="12" cy="12" r="4" /><path d="M12 2v2M12 20v2M2 12h2M20 12h2M5 5l1.5 1.5M17.5 17.5 19 19M5 19l1.5-1.5M17.5 6.5 19 5" /></>,
  moon: <path d="M20 14.5A8 8 0 0 1 9.5 4 8 8 0 1 0 20 14.5z" />,
  monitor: <><rect x="3" y="4" width="18" height="12" rx="2" /><path d="M8 20h8M12 16v4" /></>,
  sliders: <path d="M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0M14 4v4M8 10v4M16 16v4" />,
  upload: <path d="M12 16V4M6 10l6-6 6 6M4 20h16" />,
  file: <path d="M6 2h8l4 4v16H6zM14 2v4h4" />,
  'message-circle': <path d="M7.9 20A9 9 0 1 0 4 16.1L2 22z" />,
  'bar-chart-3': <path d="M3 3v18h18M18 17V9M13 17V5M8 17v-3" />,
  'bar-chart': <path d="M12 20V10M18 20V4M6 20v-4" />,
  settings: <><circle cx="12" cy="12" r="3" /><path d="M12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9 7 7M17 17l2.1 2.1M4.9 19.1 7 17M17 7l2.1-2.1" /></>,
  'help-circle': <><circle cx="12" cy="12" r="10" /><path d="M9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3M12 17h.01" /></>,
  code: <path d="m16 18 6-6-6-6M8 6l-6 6 6 6" />,
  'trending-up': <path d="m22 7-8.5 8.5-5-5L2 17M16 7h6v6" />,
  'pie-chart': <path d="M21.2 15.9A10 10 0 1 1 8 2.8M22 12A10 10 0 0 0 12 2v10z" />,
  activity: <path d="M22 12h-4l-3 9L9 3l-3 9H2" />,
  user: <><circle cx="12" cy="8" r="4" /><path d="M4 21a8 8 0 0 1 16 0" /></>,
  bot: <><rect x="4" y="8" width="16" height="12" rx="2" /><path d="M12 4v4M9 13v2M15 13v2" /></>,
};

export function Icon({ name, title }: { name: string; title?: string }) {
  if (/^https:\/\//.test(name)) return <img class="icon" src={name} alt={title || ''} />;
  const p = paths[name] || <circle cx="12" cy="12" r="4" />;
  return (
    <svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2"
      stroke-linecap="round" stroke-linejoin="round" aria-hidden={title ? undefined : 'true'} role={title ? 'img' : undefined}>
      {title ? <title>{title}</title> : null}
      {p}
    </svg>
  );
}
