import { defineConfig } from "vitepress";

// The crm-sync documentation site. `make docs` runs TypeDoc first (into
// public/api/, copied as is to the site's /api/) and then `vitepress build`.
export default defineConfig({
  title: "crm-sync",
  description:
    "Staged, offline-first, multi-tab record sync for React CRM apps (Rust compiled to WebAssembly)",
  lang: "en-US",
  cleanUrls: false,
  lastUpdated: false,
  // Nothing on the site is fetched from elsewhere: no fonts, no analytics.
  srcExclude: ["**/node_modules/**", "reference-entries/**", "README.md"],
  // The TypeDoc pages are plain HTML files under public/api/, which
  // VitePress's dead-link check does not know about.
  ignoreDeadLinks: [/^\/api\//, /^\.\.?\/api\//],
  themeConfig: {
    nav: [
      { text: "Guide", link: "/guide/getting-started" },
      { text: "API reference", link: "/reference" },
      { text: "Backend authors", link: "/backend/protocol" },
      { text: "Architecture", link: "/architecture" },
    ],
    sidebar: [
      {
        text: "Introduction",
        items: [
          { text: "Getting started", link: "/guide/getting-started" },
          { text: "What works today", link: "/guide/status" },
        ],
      },
      {
        text: "Guides",
        items: [
          { text: "Staged saves and conflicts", link: "/guide/conflicts" },
          { text: "Offline and the outbox", link: "/guide/offline" },
          { text: "Tabs", link: "/guide/tabs" },
          { text: "Presence", link: "/guide/presence" },
          { text: "Sync jobs", link: "/guide/sync-jobs" },
          { text: "Large collections and queries", link: "/guide/collections" },
          { text: "Undo and redo", link: "/guide/undo" },
          { text: "Errors", link: "/guide/errors" },
          { text: "Browsers", link: "/guide/browsers" },
        ],
      },
      {
        text: "Reference",
        items: [
          { text: "API reference (TypeDoc)", link: "/reference" },
          { text: "HTTP contract for backends", link: "/backend/protocol" },
        ],
      },
      {
        text: "Inside crm-sync",
        items: [
          { text: "Architecture", link: "/architecture" },
          { text: "Performance and size", link: "/performance" },
          { text: "Building from source", link: "/toolchain" },
        ],
      },
    ],
    outline: { level: [2, 3] },
    search: { provider: "local" },
    footer: { message: "crm-sync, MIT licensed. These pages are built from docs/ by make docs." },
  },
});
