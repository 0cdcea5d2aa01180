/* After logout: forget the copy of the scan page kept for offline use (a shared phone must not
 * show the previous person's site). Scans waiting to be synchronised stay in IndexedDB, tied to
 * their user, and leave at that user's next login. */
if (window.caches) caches.delete("passnum-scan-pages");
