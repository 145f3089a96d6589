import { useRegisterSW } from "virtual:pwa-register/react";

/**
 * The offline app shell's service worker (vite-plugin-pwa, Workbox). A new
 * build waits until the person says so: "Reload" activates it and reloads,
 * so no tab is left running old code against a new shell.
 */
export function UpdatePrompt() {
  const {
    needRefresh: [needRefresh, setNeedRefresh],
    updateServiceWorker,
  } = useRegisterSW({
    onRegisteredSW(_url, registration) {
      // A tab left open all day still hears of a new build.
      if (registration) setInterval(() => void registration.update().catch(() => {}), 60 * 60 * 1000);
    },
  });
  if (!needRefresh) return null;
  return (
    <div className="update-prompt" role="alert" data-testid="update-prompt">
      <span>A new version of the app is ready.</span>
      <button type="button" className="primary" onClick={() => activate(updateServiceWorker)}>
        Reload
      </button>
      <button type="button" onClick={() => setNeedRefresh(false)}>
        Later
      </button>
    </div>
  );
}

/**
 * Tells the waiting service worker to take over, and reloads once it does.
 * The plugin reloads on Workbox's "controlling" event, which Workbox only
 * raises for a worker it saw installing itself; a build found by the
 * browser's own update check would leave the tab waiting, so the page
 * listens for the controller change as well.
 */
function activate(updateServiceWorker: (reload?: boolean) => Promise<void>) {
  navigator.serviceWorker?.addEventListener("controllerchange", () => window.location.reload(), { once: true });
  void updateServiceWorker(true);
}
