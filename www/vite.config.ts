import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { VitePWA } from "vite-plugin-pwa";

// The API is the reference server; in `npm run dev` requests are proxied to it.
export default defineConfig({
  plugins: [
    react(),
    // The offline app shell: Workbox precaches every built file, the wasm
    // included, so a reload without a network still opens the app (its data
    // comes from IndexedDB). A new build waits for the person ("prompt").
    VitePWA({
      registerType: "prompt",
      injectRegister: false,
      manifest: {
        name: "crm-sync demo",
        short_name: "crm-sync",
        start_url: ".",
        display: "standalone",
        background_color: "#f6f7fb",
        theme_color: "#1d2330",
        icons: [{ src: "icon.svg", sizes: "any", type: "image/svg+xml", purpose: "any" }],
      },
      workbox: {
        globPatterns: ["**/*.{js,css,html,wasm,svg,png,webmanifest}"],
        // The module is a few hundred KB; Workbox's default limit is 2 MiB,
        // raised so a debug build is precached as well.
        maximumFileSizeToCacheInBytes: 16 * 1024 * 1024,
        navigateFallback: "index.html",
        // The API is never answered from the cache: the client knows when
        // it is offline and reads IndexedDB itself.
        navigateFallbackDenylist: [/^\/api\//],
        cleanupOutdatedCaches: true,
        // The first visit's page is controlled at once (so it works offline
        // without a reload); a later build still waits for "Reload".
        clientsClaim: true,
      },
    }),
  ],
  // crm-sync loads its .wasm through `new URL(..., import.meta.url)`; the
  // dependency optimiser would rewrite that path.
  optimizeDeps: { exclude: ["crm-sync"] },
  // crm-sync is linked from ../pkg (file:), where there is no React: its
  // React entry must use the app's one copy.
  resolve: { dedupe: ["react", "react-dom"] },
  server: {
    fs: { allow: [".."] },
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
  build: { outDir: "dist", emptyOutDir: true },
});
