// Light and dark themes: the system's choice unless the user picked one
// (kept in localStorage). The effective theme is <html data-theme>.
export type ThemePref = 'system' | 'light' | 'dark';

const KEY = 'chatd.theme';
const media = window.matchMedia('(prefers-color-scheme: dark)');

export function themePref(): ThemePref {
  const v = localStorage.getItem(KEY);
  return v === 'light' || v === 'dark' ? v : 'system';
}

export function applyTheme(pref: ThemePref = themePref()): void {
  const dark = pref === 'dark' || (pref === 'system' && media.matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  document.documentElement.style.colorScheme = dark ? 'dark' : 'light';
}

export function setThemePref(pref: ThemePref): void {
  if (pref === 'system') localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, pref);
  applyTheme(pref);
}

media.addEventListener('change', () => applyTheme());
