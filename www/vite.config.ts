import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The API is the reference server; in `npm run dev` requests are proxied to it.
export default defineConfig({
  plugins: [react()],
  // crm-sync loads its .wasm through `new URL(..., import.meta.url)`; the
  // dependency optimiser would rewrite that path.
  optimizeDeps: { exclude: ["crm-sync"] },
  server: {
    fs: { allow: [".."] },
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
  build: { outDir: "dist", emptyOutDir: true },
});
