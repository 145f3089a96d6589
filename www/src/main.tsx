import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import init from "crm-sync";
import { App } from "./App";
import "./app.css";

// The module must be instantiated once before any export is used.
await init();

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
