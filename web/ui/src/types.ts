// The objects and frames of the wire protocol (docs/protocol.md) that the UI reads.

export interface User {
  id: string;
  identifier: string;
  display_name: string | null;
  metadata: Record<string, unknown>;
  created_at: string;
}

export interface AuthConfig {
  methods: string[];
  requires_login: boolean;
  providers: { name: string; display_name: string }[];
}

export interface Starter {
  label: string;
  message: string;
  command: string | null;
  icon: string | null;
}

export interface ChatProfile {
  name: string;
  markdown_description: string;
  icon: string | null;
  default: boolean;
  starters: Starter[];
}

export interface EnvKey {
  key: string;
  label: string;
  required: boolean;
}

export interface AppInfo {
  name: string;
  profiles: ChatProfile[];
  settings_schema: Record<string, Widget[]>;
  env_keys: EnvKey[];
}

export interface ThreadSummary {
  id: string;
  name: string;
  chat_profile: string | null;
  created_at: string;
  updated_at: string;
}

export interface FileRef {
  id: string;
  name: string;
  size: number;
  mime: string;
}

export interface Step {
  id: string;
  type: 'user_message' | 'assistant_message' | 'system_message';
  author: string;
  content: string;
  created_at: string;
  parent_id: string | null;
  command: string | null;
  metadata: Record<string, any>;
}

export interface Thread extends ThreadSummary {
  user_id: string;
  user_identifier: string;
  metadata: Record<string, any>;
  tags: string[];
  steps: Step[];
  next_cursor?: string | null;
}

export type Widget =
  | { type: 'select'; id: string; label: string; values: string[]; initial: string; description?: string }
  | { type: 'multiselect'; id: string; label: string; values: string[]; initial: string[]; max_items: number; description?: string }
  | { type: 'switch'; id: string; label: string; initial: boolean; description?: string }
  | { type: 'slider'; id: string; label: string; min: number; max: number; step: number; initial: number; description?: string }
  | { type: 'number'; id: string; label: string; min: number | null; max: number | null; initial: number; description?: string }
  | { type: 'text'; id: string; label: string; initial: string; max_length: number; multiline: boolean; description?: string }
  | { type: 'tags'; id: string; label: string; initial: string[]; max_items: number; max_length: number; description?: string };

export interface Settings {
  schema: Widget[];
  values: Record<string, unknown>;
}

export interface Action {
  name: string;
  label: string;
  payload?: unknown;
}

// Frame is any server frame; its fields depend on its type.
export interface Frame {
  type: string;
  seq?: number;
  [k: string]: any;
}
