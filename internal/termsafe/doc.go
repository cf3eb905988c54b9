// Package termsafe owns how hpcrun prints text that it did not write: an
// image's names, platforms and annotations, a registry's error text, the
// fields of a container's state files, a job's command line. Such text
// could hold terminal control sequences (ESC [2J clears the screen, an OSC
// sequence sets the window title or, on some terminals, writes files),
// which would act on the terminal of whoever prints it, root included.
//
// Every print of such text goes through Escape or Line, which show each
// C0 and C1 control, DEL and each byte that is not UTF-8 as a readable
// escape (\x1b, \u009b, \xff) and leave everything else as it is.
package termsafe
