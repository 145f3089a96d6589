import { useEffect, useId, useRef, type ReactNode } from "react";

/**
 * A modal dialog on the native <dialog>: `showModal()` makes the rest of the
 * page inert; focus moves into it (to the element marked `data-autofocus`,
 * or the first control of the body); Escape calls `onClose`; focus goes back to
 * where it was when the dialog closes.
 */
export function Dialog({
  title,
  onClose,
  children,
  className,
}: {
  title: ReactNode;
  onClose: () => void;
  children: ReactNode;
  className?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const onCloseRef = useRef(onClose);
  onCloseRef.current = onClose;
  const titleId = useId();

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const before = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    if (!dialog.open) dialog.showModal();
    // showModal would focus the header's Close button; the first thing to
    // work with is more useful.
    const first = dialog.querySelector<HTMLElement>(
      "[data-autofocus], .dialog-body :is(input, select, textarea, button):not(:disabled)",
    );
    first?.focus();
    return () => {
      if (dialog.open) dialog.close();
      if (before?.isConnected) before.focus();
    };
  }, []);

  return (
    <dialog
      ref={ref}
      className={className ? `dialog ${className}` : "dialog"}
      aria-labelledby={titleId}
      onCancel={(e) => {
        // Escape: the app decides (the dialog unmounts, which closes it).
        e.preventDefault();
        onCloseRef.current();
      }}
      onClose={() => onCloseRef.current()}
    >
      <div className="dialog-head">
        <h2 id={titleId}>{title}</h2>
        <button type="button" className="icon" aria-label="Close" onClick={() => onCloseRef.current()}>
          ×
        </button>
      </div>
      <div className="dialog-body">{children}</div>
    </dialog>
  );
}
