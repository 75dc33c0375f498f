// Command pairs measures how much the files of each package depend on each
// other: of the n(n-1)/2 unordered pairs of a package's non-test files, how
// many are linked by one file using a name (package-level name, method or
// field) declared in the other, and how many are linked both ways
// ("mutual"). Packages over half are flagged.
//
//	cd tools/pairs && go run . ../..
//
// DUMP=<package path> lists the links of one package with the names that
// make them.
package main

import (
	"fmt"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/tools/go/packages"
)

func main() {
	cfg := &packages.Config{Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo, Dir: os.Args[1]}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		panic(err)
	}
	for _, p := range pkgs {
		files := map[string]bool{}
		for _, f := range p.GoFiles {
			files[f] = true
		}
		pairs := map[[2]string]bool{}
		dir := map[[2]string]bool{}
		why := map[[2]string]map[string]bool{}
		for id, obj := range p.TypesInfo.Uses {
			if obj == nil || obj.Pkg() != p.Types {
				continue
			}
			if _, ok := obj.(*types.PkgName); ok {
				continue
			}
			// only package-level objects, methods and fields
			if obj.Parent() != nil && obj.Parent() != p.Types.Scope() {
				continue
			}
			from := p.Fset.Position(id.Pos()).Filename
			to := p.Fset.Position(obj.Pos()).Filename
			if from == to || !files[from] || !files[to] || obj.Pos() == token.NoPos {
				continue
			}
			a, b := filepath.Base(from), filepath.Base(to)
			dir[[2]string{a, b}] = true
			if why[[2]string{a, b}] == nil {
				why[[2]string{a, b}] = map[string]bool{}
			}
			why[[2]string{a, b}][obj.Name()] = true
			if a > b {
				a, b = b, a
			}
			pairs[[2]string{a, b}] = true
		}
		if os.Getenv("DUMP") == p.PkgPath {
			for k := range dir {
				names := []string{}
				for n := range why[k] {
					names = append(names, n)
				}
				sort.Strings(names)
				fmt.Println("  ", k[0], "->", k[1], names)
			}
		}
		n := len(files)
		possible := n * (n - 1) / 2
		ratio := 0.0
		if possible > 0 {
			ratio = float64(len(pairs)) / float64(possible)
		}
		flag := ""
		if ratio > 0.5 {
			flag = "  OVER HALF"
		}
		mutual := 0
		for k := range pairs {
			if dir[[2]string{k[0], k[1]}] && dir[[2]string{k[1], k[0]}] {
				mutual++
			}
		}
		fmt.Printf("%-50s files %2d  pairs %3d of %3d  (%.0f%%)  mutual %3d (%.0f%%)%s\n", p.PkgPath, n, len(pairs), possible, 100*ratio, mutual, 100*float64(mutual)/float64(max(possible, 1)), flag)
	}
}
