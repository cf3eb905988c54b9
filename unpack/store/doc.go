// Package store is the on-disk layout of hpcrun's image cache, and what a
// job needs of it: find an unpacked image from a key of the source file
// alone (the warm start), keep it in use while a job runs, and list,
// remove and prune images.
//
// It imports only the standard library and x/sys, on purpose: hpcrun
// links it into every start, and each package linked in adds its
// initialisation to the start-up of every process, the container's init
// included. Unpacking an image into the store (package cache, with umoci)
// happens in a separate program that hpcrun runs on a cache miss.
package store
