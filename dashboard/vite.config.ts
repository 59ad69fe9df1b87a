/// <reference types="vitest/config" />
// The dashboard's build goes to dist/, which is committed and embedded in the hive binary
// (crates/server/src/routes/dashboard.rs). `npm run dev` serves it with the API of a hub on
// 127.0.0.1:7700.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const hub = "http://127.0.0.1:7700";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, assetsDir: "assets", chunkSizeWarningLimit: 300 },
  server: {
    proxy: {
      "/api": hub,
      "/metrics": hub,
      "/ws": { target: hub.replace("http", "ws"), ws: true },
    },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
